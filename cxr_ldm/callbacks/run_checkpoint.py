"""Checkpoints in `<default_root_dir>/checkpoints`, so a restarted run finds `last.ckpt`.

Lightning's default folder includes the logger's version, which a restart increments: `--ckpt_path last`
would then find nothing and silently start from scratch.
"""

from __future__ import annotations

import os

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from cxr_ldm.data.atomic import clean_stale_temporaries


class RunCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` with a folder that does not change between restarts of the same run."""

    def _pin_dirpath(self, trainer: Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._pin_dirpath(trainer)
        if trainer.is_global_zero:  # temporary files of a killed run's checkpoint writes
            clean_stale_temporaries(self.dirpath, recursive=False)
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: Trainer) -> set[str]:
        self._pin_dirpath(trainer)
        return super()._find_last_checkpoints(trainer)
