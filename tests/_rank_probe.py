"""A callback for DDP tests: each rank writes the prompts and loss of every training batch it ran."""

from __future__ import annotations

import json
from pathlib import Path

from lightning import Callback


class RankLossProbe(Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.out_dir.mkdir(parents=True, exist_ok=True)
        row = {"step": trainer.global_step, "prompts": list(batch["prompt"]), "loss": float(loss)}
        with open(self.out_dir / f"rank{trainer.global_rank}.jsonl", "a") as stream:
            stream.write(json.dumps(row) + "\n")
