"""Config files read the way `python -m cxr_ldm fit --config A --config B` reads them, for code that needs
them without training: jsonargparse composes them (each with its `config:` base, dotted keys refining the
class named before them) through the project's LightningCLI parser. Nothing here merges YAML by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from cxr_ldm.training.lightning_cli import FitRequest, run_lightning_cli


def parse_fit_config(
    configs: str | Path | Sequence[str | Path],
    overrides: Mapping[str, Any] | None = None,
    *,
    complete: bool = True,
) -> Namespace:
    """The parsed config of `configs` (applied in order) and `overrides`, with every class's defaults.

    `complete=False` accepts a config that is not a whole fit (a data-only file: no `model:`), for code that
    reads one section."""
    files = [configs] if isinstance(configs, str | Path) else list(configs)
    request = FitRequest(files, dict(overrides or {}), complete=complete)
    return run_lightning_cli(request, run=False, instantiate=False).config


def composed(configs: str | Path | Sequence[str | Path]) -> dict:
    """What the files say once composed, as plain data without file names (a digest of it keys a result)."""
    config = parse_fit_config(configs, complete=False).clone()
    config.pop("config", None)
    config.pop("__path__", None)
    return config.as_dict()
