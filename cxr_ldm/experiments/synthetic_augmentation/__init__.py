"""The synthetic-data augmentation experiment: classifiers trained on real, synthetic and mixed sets."""

from cxr_ldm.experiments.synthetic_augmentation.config import (
    AugmentationConfig,
    ClassifierSettings,
    DiffusionSettings,
    SynthesisSettings,
    condition_parts,
)
from cxr_ldm.experiments.synthetic_augmentation.experiment import ExperimentSummary, run_experiment
from cxr_ldm.experiments.synthetic_augmentation.plan import Arm, plan_arms

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
