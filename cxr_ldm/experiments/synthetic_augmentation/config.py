"""The experiment's settings as typed dataclasses: what jsonargparse validates before anything runs."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import yaml

from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.specs import ClassifierSettings
from cxr_ldm.labels import CHEXPERT_LABELS
from cxr_ldm.output_folders import check_output_folder

# A condition is '+'-joined parts: `real` or `synthetic_<k>x` (k synthetic images per real prompt).
_PART = re.compile(r"^(real|synthetic_(\d+)x)$")
DEFAULT_CONDITIONS = ("real", "synthetic_1x", "synthetic_5x", "real+synthetic_1x")


@dataclass
class SynthesisSettings:
    """How synthetic sets are drawn from a subset's prompts (one image per prompt and sample)."""

    num_inference_steps: int = 75
    guidance_scale: float = 4.0
    scheduler: str = "pndm"
    seed: int = 0
    batch_size: int = 8
    device: str = "cpu"


@dataclass
class DiffusionSettings:
    """Which diffusion model draws the synthetic sets.

    `model`: a LatentDiffusion .ckpt or a diffusers pipeline directory, used for every size.
    `finetune_config`: a `fit` config fine-tuned once per size on exactly that size's subset (its data
    section must describe the same data as the experiment's); `finetune_overrides` are further `fit` values
    by dotted key (`{trainer.max_steps: 1000}`). `finetune_args` (`["--trainer.max_steps", "1000"]`, the
    older form) is read as the same overrides, with a warning.
    """

    model: str | None = None
    finetune_config: str | None = None
    finetune_overrides: dict = field(default_factory=dict)
    finetune_args: list[str] = field(default_factory=list)

    def overrides(self) -> dict:
        """`finetune_overrides` with the older `finetune_args` pairs read into it (YAML values)."""
        if not self.finetune_args:
            return dict(self.finetune_overrides)
        args = list(self.finetune_args)
        if len(args) % 2 or not all(str(key).startswith("--") for key in args[::2]):
            raise ConfigError(
                f"diffusion.finetune_args {args}: give `--key value` pairs, or better "
                "diffusion.finetune_overrides: {key: value}"
            )
        warnings.warn(
            "diffusion.finetune_args is read as diffusion.finetune_overrides; write it as a mapping",
            FutureWarning,
            stacklevel=2,
        )
        older = {
            str(key)[2:]: yaml.safe_load(str(value)) for key, value in zip(args[::2], args[1::2], strict=True)
        }
        return {**older, **self.finetune_overrides}


@dataclass
class AugmentationConfig:
    """One augmentation experiment: real-set sizes x conditions x seeds, every arm with the same budget.

    Args:
        out: output folder (results, per-arm JSON, synthetic sets, TensorBoard logs).
        data: a fit config (its `data:` section) or a data-only config naming the real images.
        data_overrides: init_args replacing those of `data` (e.g. `{root: data/phantom}`).
        sizes: real training-set sizes; each is a seeded subset (`max_images: {train: size}`).
        conditions: training sets per arm, e.g. real, synthetic_1x, synthetic_5x, real+synthetic_1x.
        seeds: classifier seeds; every (size, condition) trains once per seed.
        test_split: the real split every arm is tested on.
    """

    out: str = "runs/augment"
    data: str = "configs/tiny.yaml"
    data_overrides: dict = field(default_factory=dict)
    sizes: list[int] = field(default_factory=lambda: [1000, 2000, 5000])
    conditions: list[str] = field(default_factory=lambda: list(DEFAULT_CONDITIONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    test_split: str = "test"
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    synthesis: SynthesisSettings = field(default_factory=SynthesisSettings)
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)

    def validate(self, need_model: bool = True) -> AugmentationConfig:
        """Check every value; raise ConfigError naming the key and the fix."""
        check_output_folder(self.out, "out:", "the experiment's results")
        if not self.sizes or min(self.sizes) < 1 or len(set(self.sizes)) != len(self.sizes):
            raise ConfigError(f"sizes: give distinct positive real-set sizes, got {self.sizes}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: give distinct classifier seeds, got {self.seeds}")
        if not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise ConfigError(f"conditions: give distinct conditions, got {self.conditions}")
        for condition in self.conditions:
            condition_parts(condition)
        unknown = [f for f in self.classifier.findings if f not in CHEXPERT_LABELS]
        if unknown or not self.classifier.findings:
            raise ConfigError(f"classifier.findings: unknown {unknown}; choose from {list(CHEXPERT_LABELS)}")
        if self.classifier.steps < 1 or self.classifier.batch_size < 1:
            raise ConfigError("classifier.steps and classifier.batch_size must be at least 1")
        d = self.diffusion
        if need_model and self.synthetic_multiples() and (d.model is None) == (d.finetune_config is None):
            raise ConfigError(
                "diffusion: set exactly one of diffusion.model (a .ckpt or pipeline dir used for every size) "
                "or diffusion.finetune_config (a fit config fine-tuned per size)"
            )
        if need_model and self.synthetic_multiples():
            from cxr_ldm.generation.image_source import check_image_source
            from cxr_ldm.generation.torch_device import pick_device

            pick_device(self.synthesis.device, "synthesis.device")
            if d.model is not None:  # before any arm trains, not when it is first drawn from
                check_image_source(d.model, "diffusion.model")
        return self

    def synthetic_multiples(self) -> list[int]:
        """Every k of a `synthetic_<k>x` part, sorted."""
        return sorted({k for c in self.conditions for part, k in condition_parts(c) if part == "synthetic"})


def condition_parts(condition: str) -> list[tuple[str, int]]:
    """`real+synthetic_1x` -> [("real", 0), ("synthetic", 1)]; ConfigError for anything else."""
    parts = []
    for text in condition.split("+"):
        match = _PART.match(text.strip())
        if match is None or (match.group(2) is not None and int(match.group(2)) < 1):
            raise ConfigError(
                f"conditions: {condition!r} is not a '+'-joined list of `real` and `synthetic_<k>x` (k >= 1), "
                "e.g. real, synthetic_5x, real+synthetic_1x"
            )
        parts.append(("real", 0) if match.group(1) == "real" else ("synthetic", int(match.group(2))))
    if len(set(parts)) != len(parts):
        raise ConfigError(f"conditions: {condition!r} names a part twice")
    return parts
