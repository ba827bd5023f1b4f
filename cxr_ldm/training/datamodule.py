"""Build the data module named by a fit config (its `data:` section) or a data-only config."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning import LightningDataModule

from cxr_ldm.errors import ConfigError
from cxr_ldm.training.config_files import read_config

DEFAULT_DATA_CLASS = "cxr_ldm.data.MimicCxrDataModule"
FIT_SECTIONS = {"data", "model", "trainer", "seed_everything", "ckpt_path", "optimizer", "lr_scheduler"}


def data_section(paths: str | Path | Sequence[str | Path]) -> tuple[str, dict]:
    """The data class and init_args that `fit --config A --config B ...` would build from `paths`: each file
    read with its `config:` base; a later file's `class_path` replaces, its init_args replace one key each."""
    class_path, init_args = DEFAULT_DATA_CLASS, {}
    for path in [paths] if isinstance(paths, str | Path) else list(paths):
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"data config {path} does not exist")
        config = read_config(path)  # with its `config:` base, as `fit --config` reads it
        bare = not (set(config) & FIT_SECTIONS)  # plain data-module arguments or {class_path, init_args}
        section = config.get("data", config if bare else None)
        if section is None:
            continue  # a config without a data section (a model-only override)
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: `data` must be a mapping with class_path and init_args")
        class_path = section.get("class_path", class_path)
        init_args.update(section.get("init_args", {} if "class_path" in section else section))
    return class_path, init_args


def load_datamodule(paths: str | Path | Sequence[str | Path], **overrides: Any) -> LightningDataModule:
    """Instantiate the data module of YAML configs (applied in order); `overrides` replace its init_args (None
    values ignored).

    Accepts full `fit` configs (`data: {class_path, init_args}`), a bare `{class_path, init_args}`, or
    plain MimicCxrDataModule arguments. The modules built here feed evaluators and prompt lists, which read
    pixels, prompts and labels, so a training config's `latent_cache_vae` is dropped: no VAE runs for them.
    """
    class_path, init_args = data_section(paths)
    init_args = dict(init_args)
    init_args.pop("latent_cache_vae", None)
    init_args.update({k: v for k, v in overrides.items() if v is not None})
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{paths}: cannot import data class {class_path}: {error}") from error
    return cls(**init_args)


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
