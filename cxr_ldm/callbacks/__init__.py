"""Callbacks that run during `fit`: sample grids and evaluations."""

from cxr_ldm.callbacks.validation_samples import ValidationSamples

__all__ = ["ValidationSamples"]
