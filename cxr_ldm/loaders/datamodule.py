"""Build the data module named by a fit config (its `data:` section) or a data-only config."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lightning import LightningDataModule

from cxr_ldm.config_files import read_config
from cxr_ldm.errors import ConfigError

DEFAULT_DATA_CLASS = "cxr_ldm.data.MimicCxrDataModule"


def load_datamodule(path: str | Path, **overrides: Any) -> LightningDataModule:
    """Instantiate the data module of a YAML config; `overrides` replace its init_args (None values ignored).

    Accepts a full `fit` config (`data: {class_path, init_args}`), a bare `{class_path, init_args}`, or
    plain MimicCxrDataModule arguments. The modules built here feed evaluators and prompt lists, which read
    pixels, prompts and labels, so a training config's `latent_cache_vae` is dropped: no VAE runs for them.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data config {path} does not exist")
    config = read_config(path)  # with its `config:` base, as `fit --config` reads it
    section = config.get("data", config)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: `data` must be a mapping with class_path and init_args")
    class_path = section.get("class_path", DEFAULT_DATA_CLASS)
    init_args = dict(section.get("init_args", {} if "class_path" in section else section))
    init_args.pop("latent_cache_vae", None)
    init_args.update({k: v for k, v in overrides.items() if v is not None})
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{path}: cannot import data class {class_path}: {error}") from error
    return cls(**init_args)
