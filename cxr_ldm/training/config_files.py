"""Read a YAML config the way `python -m cxr_ldm fit --config FILE` composes it, for code that needs one part.

A config may start with `config: BASE.yaml` (a path relative to the file; jsonargparse, behind LightningCLI,
reads that key as a nested `--config`): the base is read first and the file's later keys apply on top. A
top-level key (`model:`) replaces the base's whole section; a dotted key (`model.init_args.lr: 1.0e-4`,
`data.init_args.views: [PA]`) replaces one value, a mapping or a list whole, and keeps the rest.
The data-reading code (`load_datamodule`, `prepare --config`) reads configs through `read_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cxr_ldm.errors import ConfigError


def _set_dotted(config: dict, key: str, value: Any, path: Path) -> None:
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: `{key}` sets a value inside `{part}`, which is not a mapping")
        node = child
    node[leaf] = value


def read_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The YAML mapping of `path` with its `config:` base (and the base's base) applied."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config {path} does not exist")
    resolved = path.resolve()
    if resolved in _seen:
        raise ConfigError(f"{path}: `config:` bases form a cycle ({' -> '.join(map(str, _seen))})")
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    base = loaded.pop("config", None)
    config: dict = {}
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: `config` must name one base file, got {base!r}")
        config = read_config(path.parent / base, (*_seen, resolved))
    for key, value in loaded.items():
        _set_dotted(config, key, value, path)
    return config
