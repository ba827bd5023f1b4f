"""Seeded real training subsets and the real test split, read through the project's data module.

A subset of size N is the data module's own `max_images: {train: N}` selection, so a `fit` run given the
same data section and that option fine-tunes on exactly these images.
"""

from __future__ import annotations

from pathlib import Path

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.data.real_split import read_split
from cxr_ldm.errors import ConfigError
from cxr_ldm.training.datamodule import load_datamodule_for


def real_subset(data: str | Path, overrides: dict, image_size: int, size: int) -> ImageSet:
    """The seeded training subset of `size` images; ConfigError if the split has fewer."""
    datamodule = load_datamodule_for(data, overrides, image_size, size)
    subset = read_split(datamodule, "train")
    if len(subset) < size:
        raise ConfigError(
            f"sizes: {size} asks for more training images than the data has ({len(subset)}); "
            "lower it or use more data"
        )
    return subset
