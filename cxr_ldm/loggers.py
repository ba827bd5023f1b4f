"""TensorBoard logging under the run's folder unless told otherwise.

Lightning's `TensorBoardLogger` needs `save_dir` in the config, so a config that hard-codes it keeps writing
there when `--trainer.default_root_dir` moves the run. This one's `save_dir` is optional: the CLI fills it
with `trainer.default_root_dir` (the current folder when that is unset too).
"""

from __future__ import annotations

import os

from lightning.pytorch.loggers import TensorBoardLogger as _LightningTensorBoardLogger


class TensorBoardLogger(_LightningTensorBoardLogger):
    """Lightning's TensorBoardLogger; `save_dir` defaults to the run's `trainer.default_root_dir`."""

    def __init__(self, save_dir: str | None = None, name: str | None = "lightning_logs", **kwargs) -> None:
        super().__init__(save_dir=save_dir if save_dir is not None else os.getcwd(), name=name, **kwargs)


__all__ = ["TensorBoardLogger"]
