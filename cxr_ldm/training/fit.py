"""Train from config files and overrides given as data: the one way library code trains a model.

`fit(configs, overrides, ckpt_path=...)` builds model, data module and Trainer through the project's
LightningCLI (jsonargparse composes the files and merges the overrides; values keep their types), checks the
run as `python -m cxr_ldm fit` does, and trains. `fit_command_line` prints the equivalent command, for a user
who wants to run one unit by hand; nothing here parses it back.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxr_ldm.training.lightning_cli import (
    CxrLdmCLI,
    FitRequest,
    check_image_size,
    resolve_ckpt_path,
    run_lightning_cli,
)

LOGGER = logging.getLogger("cxr_ldm")


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def fit_command_line(
    configs: Sequence[str | Path], overrides: Mapping[str, Any] | None = None, ckpt_path: str | None = None
) -> str:
    """`python -m cxr_ldm fit --config A ... --key value` for the same run, to print (shell-quoted)."""
    line = ["python", "-m", "cxr_ldm", "fit"]
    for config in configs:
        line += ["--config", str(config)]
    for key, value in (overrides or {}).items():
        line += [f"--{key}", _shown(value)]
    if ckpt_path is not None:
        line += ["--ckpt_path", str(ckpt_path)]
    return shlex.join(line)


def build_run(configs: Sequence[str | Path], overrides: Mapping[str, Any] | None = None) -> CxrLdmCLI:
    """Model, data module and Trainer of a fit, built and not run (`cli.model`, `cli.datamodule`, `cli.trainer`)."""
    return run_lightning_cli(FitRequest(list(configs), dict(overrides or {})), run=False)


def fit(
    configs: Sequence[str | Path],
    overrides: Mapping[str, Any] | None = None,
    *,
    ckpt_path: str | Path | None = None,
    callbacks: Sequence[Any] = (),
) -> CxrLdmCLI:
    """Train as `python -m cxr_ldm fit --config A --config B ... --key value` does, from Python objects.

    `configs` apply in order; `overrides` maps dotted keys to values of their own types (`{"trainer.max_steps":
    2, "data.init_args.max_images": {"train": 50}}`); `ckpt_path` is `auto` (resume when a last checkpoint
    exists), `last` (resume; an error without one) or a file; `callbacks` (Lightning callbacks built in Python,
    e.g. an experiment's learning-curve probe) join the configs' own, their state resumed with the rest.
    Returns the finished run (its `trainer`, `model`, `datamodule`). A user error raises `ConfigError`.
    """
    LOGGER.info(
        "fit: %s", fit_command_line(configs, overrides, None if ckpt_path is None else str(ckpt_path))
    )
    cli = build_run(configs, overrides)
    check_image_size(cli.model, cli.datamodule)
    if callbacks:
        from lightning.pytorch.callbacks import Checkpoint

        # checkpoints last, as Lightning orders them: a checkpoint holds the other callbacks' state of its step
        every = [*cli.trainer.callbacks, *callbacks]
        cli.trainer.callbacks = [c for c in every if not isinstance(c, Checkpoint)] + [
            c for c in every if isinstance(c, Checkpoint)
        ]
    resume = resolve_ckpt_path(cli.trainer, None if ckpt_path is None else str(ckpt_path), cli.model)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume, weights_only=True)
    return cli
