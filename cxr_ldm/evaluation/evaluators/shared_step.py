"""The evaluators' LightningModule contract: one `_shared_step(batch, stage)` serves train, val and test."""

from __future__ import annotations

import torch
from lightning import LightningModule


class SharedStepModule(LightningModule):
    """`training_step`, `validation_step` and `test_step` call `_shared_step(batch, "train" | "val" | "test")`."""

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")
