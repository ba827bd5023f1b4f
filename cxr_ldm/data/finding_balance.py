"""Finding-balanced sampling of the training split, so that rare findings are not drowned by normal studies.

A prompt whose finding the model sees in one image of twelve (pneumothorax in MIMIC-CXR) is learnt last; drawing
training images with weights that lift rare findings lets a short fine-tune learn every finding it prompts for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import WeightedRandomSampler

from cxr_ldm.labels import CHEXPERT_LABELS


def finding_balance_weights(labels: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """One weight per image: the rarest of its positive findings sets it, as count ** -power.

    `labels` is (N, 14) in CHEXPERT_LABELS order (1 positive; 0, -1 or NaN not). Images with no positive label
    form one more group of their own. power 0 is plain uniform sampling, 1 gives every finding about the same
    share of the images drawn (as far as images with several findings allow), 0.5 lies between.
    """
    if labels.ndim != 2 or labels.shape[1] != len(CHEXPERT_LABELS):
        raise ValueError(f"labels must be (N, {len(CHEXPERT_LABELS)}), got {tuple(labels.shape)}")
    if power < 0:
        raise ValueError(f"balance power must be >= 0, got {power}")
    positive = labels == 1
    groups = torch.cat([positive, ~positive.any(dim=1, keepdim=True)], dim=1)
    counts = groups.sum(dim=0).clamp(min=1).double()
    group_weight = counts.pow(-power)
    weights = torch.where(groups, group_weight, torch.zeros_like(group_weight)).max(dim=1).values
    return (weights / weights.mean()).float()


class EpochWeightedSampler(WeightedRandomSampler):
    """`WeightedRandomSampler` whose draw for an epoch comes from seed + that epoch (`epoch()`, the trainer's
    current epoch), so the order is a function of (seed, epoch) and a resumed run draws what an
    uninterrupted one drew, in one process and under Lightning's DDP wrapper alike. The first epoch's
    draw is the one a generator seeded once with `seed` gives."""

    def __init__(self, weights: torch.Tensor, seed: int, epoch: Callable[[], int] | None = None) -> None:
        super().__init__(weights, num_samples=len(weights), replacement=True)
        self.seed, self.epoch = seed, epoch

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch() if self.epoch is not None else 0
        self.generator = torch.Generator().manual_seed(self.seed + epoch)
        return super().__iter__()


def finding_balanced_sampler(
    labels: torch.Tensor, power: float = 1.0, seed: int = 0, epoch: Callable[[], int] | None = None
) -> WeightedRandomSampler:
    """Draw as many images per epoch as the split holds, with replacement, weighted by `finding_balance_weights`,
    from seed + epoch (`epoch()`).

    Under DDP Lightning wraps this sampler in its distributed wrapper, so each rank draws its own share.
    """
    weights = finding_balance_weights(labels, power)
    return EpochWeightedSampler(weights.double(), seed, epoch)
