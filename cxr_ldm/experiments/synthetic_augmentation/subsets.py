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


def real_subset(data: str | Path, overrides: dict, image_size: int, size: int) -> tuple[ImageSet, list[str]]:
    """The seeded training subset of `size` images, and the dicom ids the data module selects for it (a
    fine-tune given the same data section trains on exactly these). Under `bad_sample_policy: skip` an image
    that cannot be read is left out of the first (read_split warns) but stays in the selection. ConfigError
    when the split has fewer than `size` images."""
    datamodule = load_datamodule_for(data, overrides, image_size, size)
    subset = read_split(datamodule, "train")
    selected = [str(i) for i in datamodule.datasets["train"].dicom_ids]
    if len(selected) < size:
        raise ConfigError(
            f"sizes: {size} asks for more training images than the data has ({len(selected)}); "
            "lower it or use more data"
        )
    return subset, selected
