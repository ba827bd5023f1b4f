"""The synthetic-data augmentation experiment: classifiers trained on real, synthetic and mixed sets."""

from cxr_ldm.experiments.synthetic_augmentation.config import (
    AugmentationConfig,
    ClassifierSettings,
    DiffusionSettings,
    SynthesisSettings,
    condition_parts,
)
from cxr_ldm.experiments.synthetic_augmentation.plan import Arm, plan_arms


def __getattr__(name: str):
    """`run_experiment` and `ExperimentSummary` are imported when first asked for: the experiment trains and
    samples (Lightning, diffusers), while its config, read by every command line, needs none of that."""
    if name in ("ExperimentSummary", "run_experiment"):
        from cxr_ldm.experiments.synthetic_augmentation import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Arm",
    "AugmentationConfig",
    "ClassifierSettings",
    "DiffusionSettings",
    "ExperimentSummary",
    "SynthesisSettings",
    "condition_parts",
    "plan_arms",
    "run_experiment",
]
