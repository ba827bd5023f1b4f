"""Seeded real training subsets and the real test split, read through the project's data module.

A subset of size N is the data module's own `max_images: {train: N}` selection, so a `fit` run given the
same data section and that option fine-tunes on exactly these images.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.synthetic_augmentation.image_set import ImageSet, to_uint8
from cxr_ldm.loaders.datamodule import load_datamodule


def load_datamodule_for(
    data: str | Path, overrides: dict, image_size: int, size: int | None = None, channels: int = 1
):
    """The experiment's data module at the classifier's resolution, limited to `size` training images."""
    args = {**overrides, "image_size": image_size, "channels": channels, "num_workers": 0}
    if size is not None:
        args["max_images"] = {"train": int(size)}
    datamodule = load_datamodule(data, **args)
    datamodule.setup()
    return datamodule


def read_split(datamodule, split: str) -> ImageSet:
    """Every image of `split`, decoded once into memory."""
    if split not in datamodule.datasets:
        raise ConfigError(
            f"test_split: {split!r} is not a split of the data module ({sorted(datamodule.datasets)})"
        )
    dataset = datamodule.datasets[split]
    if len(dataset) == 0:
        raise ConfigError(
            f"the {split!r} split of the experiment's data is empty; check `data` and `data_overrides`"
        )
    images = torch.stack([to_uint8(dataset[i]["pixel_values"]) for i in range(len(dataset))])
    return ImageSet(images, dataset.labels.clone(), list(dataset.prompts), list(dataset.dicom_ids))


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
