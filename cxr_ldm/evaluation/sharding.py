"""Split per-image work across ranks and merge it on rank 0 (torch.distributed, gloo: CPU tensors only).

Rank r of W takes rows r, r + W, r + 2W, ... of each image set, as `generate_images` does with images; the
results travel to rank 0 with `gather_object` and are put back in row order, so the merged tensors equal
what one process computes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist

from cxr_ldm.errors import ConfigError
from cxr_ldm.generation.generated_folder import rank_and_world


def init_distributed(timeout_hours: float = 6.0) -> tuple[int, int]:
    """Join the process group that torchrun (or RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT) describes.

    One process (no WORLD_SIZE, or 1) needs nothing. The group uses gloo: only CPU tensors travel, so it
    works beside any device the models run on. Returns (rank, world size).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    rank, world = rank_and_world()
    if world <= 1:
        return rank, world
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={world} but {' and '.join(missing)} unset: launch with `torchrun --nproc-per-node N "
            "-m cxr_ldm evaluate ...` or set MASTER_ADDR and MASTER_PORT on every rank"
        )
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(hours=timeout_hours))
    return rank, world


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


Job = tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]


def run_sharded(jobs: dict[str, Job], rank: int = 0, world: int = 1) -> dict[str, torch.Tensor] | None:
    """`fn(inputs[rows])` for this rank's rows of every job; on rank 0 the full results in row order.

    Each job is `name -> (fn, inputs)` where `fn` maps a slice of `inputs` (rows first) to a CPU tensor with
    one row per input row. Other ranks return None.
    """
    local = {}
    for name, (fn, inputs) in jobs.items():
        rows = torch.arange(rank, len(inputs), world)
        local[name] = fn(inputs[rows]).cpu() if len(rows) else None
    if world <= 1:
        return local
    parts: list[dict | None] | None = [None] * world if rank == 0 else None
    dist.gather_object(local, parts, dst=0)
    if rank != 0:
        return None
    merged = {}
    for name, (_, inputs) in jobs.items():
        pieces = [(r, part[name]) for r, part in enumerate(parts) if part[name] is not None]
        template = pieces[0][1]
        full = torch.empty((len(inputs), *template.shape[1:]), dtype=template.dtype)
        for r, piece in pieces:
            full[r::world] = piece
        merged[name] = full
    return merged
