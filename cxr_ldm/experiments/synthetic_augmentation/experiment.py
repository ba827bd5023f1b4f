"""Run the whole augmentation experiment, skipping every arm that finished in an earlier run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.data.real_split import read_split
from cxr_ldm.evaluation.metrics.metric_names import AUROC
from cxr_ldm.experiments.synthetic_augmentation.arm_inputs import arm_inputs, model_identity
from cxr_ldm.experiments.synthetic_augmentation.classifier_arm import run_arm
from cxr_ldm.experiments.synthetic_augmentation.config import AugmentationConfig, condition_parts
from cxr_ldm.experiments.synthetic_augmentation.finetune import finetune_for_size
from cxr_ldm.experiments.synthetic_augmentation.plan import plan_arms
from cxr_ldm.experiments.synthetic_augmentation.results import (
    read_arm_result,
    write_arm_result,
    write_outputs,
)
from cxr_ldm.experiments.synthetic_augmentation.subsets import real_subset
from cxr_ldm.experiments.synthetic_augmentation.synthetic import ensure_synthetic
from cxr_ldm.generation.generated_folder import read_generated
from cxr_ldm.training.datamodule import load_datamodule_for

LOG = logging.getLogger("cxr_ldm.experiments.synthetic_augmentation")


@dataclass
class ExperimentSummary:
    """What a run did: arms computed now, arms reused from earlier runs, and the output files."""

    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)


def training_set(condition: str, real: ImageSet, synthetic: dict[int, ImageSet]) -> ImageSet:
    """The union of a condition's parts: the real subset and/or the first k synthetic samples per prompt."""
    parts = [real if kind == "real" else synthetic[k] for kind, k in condition_parts(condition)]
    return parts[0] if len(parts) == 1 else ImageSet.concat(parts)


def _source_for_size(config: AugmentationConfig, size: int, selected: list[str], source):
    if source is not None:
        return source
    from cxr_ldm.generation.image_source import load_image_source

    d = config.diffusion
    if d.model is not None:
        return load_image_source(d.model, config.synthesis.device, option="diffusion.model")
    run_dir = Path(config.out) / "finetune" / f"size{size}"
    checkpoint = finetune_for_size(
        d.finetune_config, run_dir, size, dict(config.data_overrides), d.overrides(), selected
    )
    return load_image_source(checkpoint, config.synthesis.device)


def run_experiment(config: AugmentationConfig, source=None) -> ExperimentSummary:
    """Every arm of `config`; `source` (anything with `sample(prompts, seeds, ...)`) overrides `diffusion`.

    Each finished arm is written at once and atomically, so an interrupted run loses no finished arm and a
    rerun computes only the missing ones.
    """
    config.validate(need_model=source is None)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config.classifier
    summary = ExperimentSummary()
    model = model_identity(config, source)
    keys = {arm: arm_inputs(config, arm, model) for arm in plan_arms(config)}
    pending, unrecorded = [], []
    for arm in plan_arms(config):
        earlier = read_arm_result(arm, out)
        if earlier is None:
            pending.append(arm)
        elif "inputs" not in earlier:  # written before arms recorded their inputs: nothing to check it by
            unrecorded.append(arm.name)
            summary.reused.append(arm.name)
        elif keys[arm] is not None and earlier["inputs"] == keys[arm]:
            summary.reused.append(arm.name)
            LOG.info("arm %s finished earlier; skipped", arm.name)
        else:
            pending.append(arm)
            LOG.warning(
                "arm %s was made from other inputs (or by a model in memory); computing it again", arm.name
            )
    if unrecorded:
        LOG.warning(
            "%d arm results under %s record no inputs (an older version wrote them): reused as they are; "
            "delete them to compute them again: %s", len(unrecorded), out / "arms", ", ".join(unrecorded),
        )  # fmt: skip
    test = None
    if pending:
        test_module = load_datamodule_for(config.data, dict(config.data_overrides), settings.image_size)
        test = read_split(test_module, config.test_split, key="test_split")
    multiples = config.synthetic_multiples()
    cached_source = None
    for size in config.sizes:
        todo = [arm for arm in pending if arm.size == size]
        if not todo:
            continue
        real, selected = real_subset(config.data, dict(config.data_overrides), settings.image_size, size)
        needed = sorted(
            {k for arm in todo for kind, k in condition_parts(arm.condition) if kind == "synthetic"}
        )
        synthetic: dict[int, ImageSet] = {}
        if needed:
            if source is None and config.diffusion.model is not None and cached_source is not None:
                size_source = cached_source
            else:
                size_source = _source_for_size(config, size, selected, source)
                cached_source = size_source if config.diffusion.model is not None else None
            folder = ensure_synthetic(
                size_source, real, out / "synthetic" / f"size{size}", max(multiples), config.synthesis, model
            )
            synthetic = {
                k: read_generated(folder, per_prompt=k, image_size=settings.image_size) for k in needed
            }
        for arm in todo:
            result = run_arm(training_set(arm.condition, real, synthetic), test, settings, arm.seed)
            write_arm_result(arm, out, {**result, "inputs": keys[arm]})
            summary.computed.append(arm.name)
            LOG.info("arm %s computed: macro AUROC %s", arm.name, result["metrics"].get(AUROC))
    summary.results = [read_arm_result(arm, out) for arm in plan_arms(config)]
    summary.outputs = write_outputs(
        out, summary.results, list(settings.findings), list(config.sizes), list(config.conditions)
    )
    return summary
