"""Callbacks that run during `fit`: resumable checkpoints, sample grids, evaluations, a progress line."""

from cxr_ldm.callbacks.augmentation_experiment import AugmentationExperiment
from cxr_ldm.callbacks.generation_metrics import GenerationMetrics
from cxr_ldm.callbacks.progress_log import ProgressLog
from cxr_ldm.callbacks.validation_samples import ValidationSamples
from cxr_ldm.checkpoints import RunCheckpoint

__all__ = ["AugmentationExperiment", "GenerationMetrics", "ProgressLog", "RunCheckpoint", "ValidationSamples"]
