"""Config files read the way `python -m cxr_ldm fit --config A --config B` reads them, for code that needs
them without training: jsonargparse composes them (each with its `config:` base, dotted keys refining the
class named before them) through the project's LightningCLI parser. Nothing here merges YAML by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace

from cxr_ldm.errors import ConfigError
from cxr_ldm.training.config_yaml import InvalidYaml, not_a_mapping


def parse_fit_config(
    configs: str | Path | Sequence[str | Path],
    overrides: Mapping[str, Any] | None = None,
    *,
    complete: bool = True,
) -> Namespace:
    """The parsed config of `configs` (applied in order) and `overrides`, with every class's defaults.

    `complete=False` accepts a config that is not a whole fit (a data-only file: no `model:`), for code that
    reads one section."""
    from cxr_ldm.training.lightning_cli import FitRequest, run_lightning_cli

    files = [configs] if isinstance(configs, str | Path) else list(configs)
    request = FitRequest(files, dict(overrides or {}), complete=complete)
    return run_lightning_cli(request, run=False, instantiate=False).config


def composed(configs: str | Path | Sequence[str | Path]) -> dict:
    """What the files say once composed, as plain data without file names (a digest of it keys a result)."""
    config = parse_fit_config(configs, complete=False).clone()
    config.pop("config", None)
    config.pop("__path__", None)
    return config.as_dict()


def file_contents(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """What a config file says as written, for a unit's key and for naming old keys: its YAML with its `config:` base (and the base's base) laid
    under it, dotted keys as nested mappings. Unit keys have digested this form since they were introduced,
    so result folders of earlier runs stay valid; nothing is built from it (`parse_fit_config` composes).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config {path} does not exist")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: `config:` bases form a cycle")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:  # named here: the file may be the `config:` base of the one given
        raise InvalidYaml(path, error) from None
    if not isinstance(loaded, dict):
        raise not_a_mapping(path, loaded)
    base = loaded.pop("config", None)
    contents = file_contents(path.parent / base, (*_seen, path.resolve())) if isinstance(base, str) else {}
    for key, value in loaded.items():
        *parents, leaf = str(key).split(".")
        node = contents
        for part in parents:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ConfigError(f"{path}: `{key}` sets a value inside `{part}`, which is not a mapping")
            node = node[part]
        node[leaf] = value
    return contents
