"""Build the data module that fit configs describe (their `data:` section), without the rest of the fit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from lightning import LightningDataModule

from cxr_ldm.errors import ConfigError
from cxr_ldm.training.config_files import parse_fit_config


def data_section(paths: str | Path | Sequence[str | Path]) -> tuple[str, dict]:
    """The data class path and its init_args as `fit --config A --config B ...` composes them from `paths`."""
    section = parse_fit_config(paths, complete=False).get("data")
    if section is None:
        raise ConfigError(f"{paths}: no `data:` section (class_path and init_args of a data module)")
    return section.class_path, section.init_args.as_dict()


def load_datamodule(paths: str | Path | Sequence[str | Path], **overrides: Any) -> LightningDataModule:
    """Instantiate the data module of fit configs (applied in order); `overrides` replace its init_args (None
    values ignored).

    The modules built here feed evaluators and prompt lists, which read pixels, prompts and labels, so a
    training config's `latent_cache_vae` is dropped: no VAE runs for them. jsonargparse resolves the class
    path and checks every argument against the class's signature.
    """
    class_path, init_args = data_section(paths)
    init_args.pop("latent_cache_vae", None)
    init_args.update({k: v for k, v in overrides.items() if v is not None})
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    try:
        config = parser.parse_object({"data": {"class_path": class_path, "init_args": init_args}})
    except Exception as error:
        raise ConfigError(f"{paths}: data section {class_path}: {error}") from error
    return parser.instantiate_classes(config).data


def load_datamodule_for(
    data: str | Path, overrides: dict, image_size: int, size: int | None = None, channels: int = 1
) -> LightningDataModule:
    """The data module of `data` at a classifier's resolution (set up, no worker processes), limited to
    `size` training images (the module's own seeded `max_images: {train: size}` selection)."""
    args = {**overrides, "image_size": image_size, "channels": channels, "num_workers": 0}
    if size is not None:
        args["max_images"] = {"train": int(size)}
    datamodule = load_datamodule(data, **args)
    datamodule.setup()
    return datamodule
