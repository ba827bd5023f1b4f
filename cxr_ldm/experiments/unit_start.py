"""What every unit sets at its start, so that it is a function of its inputs whatever ran before it in the
process (in-process launcher) or whether it runs alone (a job): torch's thread count (it changes CPU
summation order, so it is one of the unit's inputs) and every random source (Python, NumPy, torch, CUDA,
and the seeds Lightning gives data-loader workers)."""

from __future__ import annotations

import torch
from lightning.fabric.utilities.seed import seed_everything


def start_unit(threads: int, seed: int) -> None:
    torch.set_num_threads(threads)
    seed_everything(seed, workers=True, verbose=False)


__all__ = ["start_unit"]
