"""A config file's YAML as every reader of it needs it: readable (`InvalidYaml` names the line of the problem)
and a mapping (`check_config_file`: an empty, comment-only, list or single-value file, or such a `config:`
base, is refused naming the file and what a config file holds). Loads no Lightning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cxr_ldm.errors import ConfigError


class InvalidYaml(ConfigError):
    """A config file that YAML cannot read, named with the line of the problem."""

    def __init__(self, path: Path, error: yaml.YAMLError) -> None:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
        super().__init__(f"config {path} is not valid YAML ({problem}{where}); fix the file")


CONFIG_SHAPE = (
    "a config file holds a YAML mapping of sections (`trainer:`, `model:`, `data:`, ...) or of dotted keys "
    "(`model.init_args.objective.snr_gamma: 5.0`)"
)


def not_a_mapping(path: Path, loaded: Any) -> ConfigError:
    """The error for config file `path`, whose YAML `loaded` is no mapping."""
    if loaded is None:
        what = "is empty (or holds only comments)"
    elif isinstance(loaded, list):
        what = "holds a YAML list"
    else:
        what = f"holds a single {type(loaded).__name__} ({str(loaded)[:40]!r})"
    return ConfigError(f"config {path} {what}; {CONFIG_SHAPE}: write one into it, or stop naming the file")


def check_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> None:
    """Refuse, naming the file, a config file (or its `config:` base, or the base's base) that YAML cannot
    read or that holds no mapping: empty, only comments, a list, a single value. A file that is not there is
    left to the reader that names it."""
    path = Path(path)
    if not path.is_file() or path.resolve() in _seen:
        return
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InvalidYaml(path, error) from None
    if not isinstance(loaded, dict):
        raise not_a_mapping(path, loaded)
    base = loaded.get("config")
    if isinstance(base, str):
        check_config_file(path.parent / base, (*_seen, path.resolve()))
