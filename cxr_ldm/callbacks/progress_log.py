"""A plain progress line every few training steps, for runs whose output goes to a log file.

`step 120/2000 (6%)  train/loss 0.1532  0.412 s/step  eta 12m54s`: the seconds per step are the wall time
of the last interval divided by its optimizer steps (validation and checkpoint time included, so the
estimate is honest about what the rest of the run costs). The line goes through Lightning's rank-zero
logger, which a `fit` prints at INFO level.
"""

from __future__ import annotations

import time

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from cxr_ldm.errors import ConfigError


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class ProgressLog(Callback):
    """Log step, loss, seconds per step and time left every `every_n_steps` optimizer steps."""

    def __init__(self, every_n_steps: int = 50) -> None:
        if every_n_steps < 1:
            raise ConfigError(f"ProgressLog: every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._mark: tuple[int, float] | None = None
        self.seconds_per_step: list[float] = []  # one value per logged interval

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._mark = (trainer.global_step, time.perf_counter())

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        step = trainer.global_step
        if self._mark is None or step == self._mark[0] or step % self.every_n_steps:
            return
        now = time.perf_counter()
        per_step = (now - self._mark[1]) / (step - self._mark[0])
        self._mark = (step, now)
        self.seconds_per_step.append(per_step)
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        loss = trainer.callback_metrics.get("train/loss")
        parts = [f"step {step}/{total} ({100 * step / total:.0f}%)" if total else f"step {step}"]
        if loss is not None:
            parts.append(f"train/loss {float(loss):.4f}")
        parts.append(f"{per_step:.3f} s/step")
        if total:
            parts.append(f"eta {_duration(per_step * (total - step))}")
        rank_zero_info("  ".join(parts))
