"""The augmentation experiment as a follow-up of the experiment engine (experiments/followup.py): classifiers
trained on real, synthetic and mixed sets drawn by the model of one arm, after the arms are judged.

Its section of an experiment config is `augmentation:` (an `AugmentationSpec`, or null to switch it off);
its claim groups are `augment/<size>/<condition>`; its outputs live under `<out>/augment/`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cxr_ldm.data.file_identity import file_digest
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.claims import add_values, flatten
from cxr_ldm.experiments.followup import FollowupInputs, FollowupResult
from cxr_ldm.experiments.spec import ExperimentConfig
from cxr_ldm.experiments.synthetic_augmentation.config import (
    AugmentationConfig,
    DiffusionSettings,
    SynthesisSettings,
    condition_parts,
)
from cxr_ldm.experiments.units import claim_folder


@dataclass
class AugmentationSpec:
    """The synthetic-data augmentation experiment (docs/augmentation.md) with the model of one arm and seed."""

    arm: str
    seed: int | None = None
    sizes: list[int] = field(default_factory=lambda: [50, 100])
    conditions: list[str] = field(
        default_factory=lambda: ["real", "synthetic_1x", "synthetic_2x", "real+synthetic_1x"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    classifier_steps: int = 150


class AugmentationFollowup:
    """The augmentation experiment with the model of `spec.arm` (its first seed, or `spec.seed`); every
    classifier has the evaluator's architecture and the same budget. `spec` None: switched off (claims on its
    groups are "not measured")."""

    key = "augmentation"
    prefix = "augment"
    groups = "augment/<size>/<condition> of the augmentation experiment"
    stage = "augmentation experiment"

    def __init__(self, spec: AugmentationSpec | None) -> None:
        self.settings = spec

    def validate(self, config: ExperimentConfig) -> None:
        spec = self.settings
        if spec is None:
            return
        names = [arm.name for arm in config.arms]
        if spec.arm not in names:
            raise ConfigError(f"augmentation.arm {spec.arm!r} is not an arm; choose from {names}")
        arm = config.arms[names.index(spec.arm)]
        if spec.seed is not None and spec.seed not in config.arm_seeds(arm):
            raise ConfigError(f"augmentation.seed {spec.seed} is not a seed of arm {spec.arm!r}")
        for condition in spec.conditions:
            condition_parts(condition)

    def provides(self, group: str) -> bool:
        parts = group.split("/")
        if len(parts) != 3 or parts[0] != self.prefix or not parts[1].isdigit():
            return False
        if self.settings is None:
            return True
        return int(parts[1]) in self.settings.sizes and parts[2] in self.settings.conditions

    def run(self, inputs: FollowupInputs) -> FollowupResult:
        config, spec = inputs.config, self.settings
        arm = next(a for a in config.arms if a.name == spec.arm)
        seed = spec.seed if spec.seed is not None else config.arm_seeds(arm)[0]
        checkpoint = inputs.arms[arm.name][seed]["checkpoint"]
        p = config.protocol
        augment = AugmentationConfig(
            out=str(Path(config.out) / "augment"), data=config.data.config,
            data_overrides=dict(inputs.data_overrides), sizes=list(spec.sizes),
            conditions=list(spec.conditions), seeds=list(spec.seeds),
            classifier=replace(config.evaluator.classifier, steps=spec.classifier_steps),
            synthesis=SynthesisSettings(num_inference_steps=p.sample_steps, guidance_scale=p.guidance,
                                        scheduler=p.scheduler, batch_size=p.batch_size),
            diffusion=DiffusionSettings(model=checkpoint),
        )  # fmt: skip
        from cxr_ldm.experiments.real_references import reference_inputs

        inputs_key = {  # `augment/inputs.json`: a rerun with the same inputs reuses the folder
            "augmentation": asdict(spec),
            "data": reference_inputs(config),
            "model": str(checkpoint),
            "weights": file_digest(
                Path(checkpoint)
            ),  # a refit under the same path draws other synthetic sets
            "classifier": asdict(augment.classifier),
            "synthesis": asdict(augment.synthesis),
        }
        claim_folder(Path(augment.out), inputs_key, inputs.log.line)
        from cxr_ldm.experiments.synthetic_augmentation.experiment import run_experiment

        summary = run_experiment(augment)
        results = {
            "arm": arm.name, "seed": seed, "results": summary.results,
            "table": str(summary.outputs["table"]), "chart": str(summary.outputs.get("chart", "")),
        }  # fmt: skip
        values: dict = {}
        for row in summary.results:
            add_values(values, f"{self.prefix}/{row['size']}/{row['condition']}", flatten(row["metrics"]))
        report = [
            f"## Augmentation experiment (model: {arm.name}, seed {seed}; mean ± sd over classifier seeds)", "",
            Path(results["table"]).read_text(), "![augmentation](augment/results.png)", "",
        ]  # fmt: skip
        return FollowupResult(results, values, report)
