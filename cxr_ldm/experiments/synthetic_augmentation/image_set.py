"""Images held in memory as uint8 with their labels: the classifier's training and test sets.

uint8 keeps a 5k-image 224 px set near 250 MB; items are converted to the batch contract on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


@dataclass
class ImageSet:
    """images (N, 1, S, S) uint8; labels (N, 14) float32 in CHEXPERT_LABELS order, NaN = unknown."""

    images: torch.Tensor
    labels: torch.Tensor
    prompts: list[str]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def take(self, rows: list[int]) -> ImageSet:
        index = torch.as_tensor(rows, dtype=torch.long)
        return ImageSet(
            self.images[index],
            self.labels[index],
            [self.prompts[i] for i in rows],
            [self.ids[i] for i in rows],
        )

    @staticmethod
    def concat(sets: list[ImageSet]) -> ImageSet:
        return ImageSet(
            torch.cat([s.images for s in sets]),
            torch.cat([s.labels for s in sets]),
            [p for s in sets for p in s.prompts],
            [i for s in sets for i in s.ids],
        )


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Batch-contract pixels in [-1, 1] -> uint8, one channel."""
    if pixels.shape[-3] != 1:
        pixels = pixels.mean(dim=-3, keepdim=True)
    return ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class ImageSetDataset(Dataset):
    """An ImageSet in the batch contract: pixel_values (1, S, S) in [-1, 1] and labels (14,)."""

    def __init__(self, data: ImageSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        pixels = self.data.images[index].float() / 127.5 - 1.0
        return {"pixel_values": pixels, "labels": self.data.labels[index]}
