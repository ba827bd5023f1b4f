"""Real images of one split of a data module, in [0, 1], with prompts, labels and report text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset


@dataclass
class RealSet:
    images: torch.Tensor  # (N, 1, H, W) in [0, 1]
    prompts: list[str]
    labels: torch.Tensor  # (N, 14), NaN = unknown
    reports: list[str]


def load_real_split(datamodule, split: str, limit: int | None = None, seed: int = 0) -> RealSet:
    """Up to `limit` images of `split` (a seeded subset when the split is larger)."""
    datamodule.setup()
    dataset = datamodule.datasets[split]
    rows = np.arange(len(dataset))
    if limit is not None and len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    images, prompts, labels = [], [], []
    for batch in DataLoader(Subset(dataset, rows.tolist()), batch_size=64, num_workers=0):
        images.append(((batch["pixel_values"].float().mean(dim=1, keepdim=True) + 1) / 2).clamp(0, 1))
        prompts += list(batch["prompt"])
        labels.append(batch["labels"].float())
    reports = prompts
    index = getattr(datamodule, "index", None)
    if index is not None and "section" in index:
        sections = index[index["split"] == split]["section"].astype(str).to_numpy()
        reports = [sections[i] for i in rows]
    return RealSet(torch.cat(images), prompts, torch.cat(labels), list(reports))
