"""Images held in memory with their labels and prompts: real splits, generated folders, training sets.

The pixel convention: an `ImageSet` keeps its images as uint8 (N, 1, H, W), so a 5k-image 224 px set stays
near 250 MB. Float pixels exist only through two methods: `pixels01()` (float [0, 1], what the metrics take)
and `pixels()` (float [-1, 1], the batch contract the models take). Arithmetic is never done on `images`
itself (uint8 wraps around silently). `to_uint8` brings [-1, 1] pixels back into a set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


@dataclass
class ImageSet:
    """images (N, 1, H, W) uint8; labels (N, 14) float32 in CHEXPERT_LABELS order, NaN = unknown; one prompt
    and one id per image. A generated set also has `prompt_index` (the prompt each image was drawn from), a
    real split `reports` (the report text of each image)."""

    images: torch.Tensor
    labels: torch.Tensor
    prompts: list[str]
    ids: list[str]
    prompt_index: list[int] | None = None
    reports: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 1:
            raise ValueError(
                f"ImageSet.images must be uint8 (N, 1, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        count = len(self.images)
        sizes = {"labels": len(self.labels), "prompts": len(self.prompts), "ids": len(self.ids)}
        for name in ("prompt_index", "reports"):
            if getattr(self, name) is not None:
                sizes[name] = len(getattr(self, name))
        wrong = {name: size for name, size in sizes.items() if size != count}
        if wrong:
            raise ValueError(f"ImageSet has {count} images but {wrong}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        """Whether any image has a known label (prompts written without labels have none)."""
        return not torch.isnan(self.labels).all()

    def pixels01(self) -> torch.Tensor:
        """The images as float (N, 1, H, W) in [0, 1]."""
        return self.images.float() / 255.0

    def pixels(self) -> torch.Tensor:
        """The images as float (N, 1, H, W) in [-1, 1], the batch contract."""
        return self.images.float() / 127.5 - 1.0

    def take(self, rows: list[int]) -> ImageSet:
        """The images at `rows`, in that order."""
        rows = [int(i) for i in rows]
        index = torch.as_tensor(rows, dtype=torch.long)
        return ImageSet(
            self.images[index],
            self.labels[index],
            [self.prompts[i] for i in rows],
            [self.ids[i] for i in rows],
            None if self.prompt_index is None else [self.prompt_index[i] for i in rows],
            None if self.reports is None else [self.reports[i] for i in rows],
        )

    @staticmethod
    def concat(sets: list[ImageSet]) -> ImageSet:
        """The sets one after another; `prompt_index` / `reports` are kept only when every set has them
        (prompt indices of later sets are shifted past those of earlier ones, so groups stay apart)."""
        if not sets:
            raise ValueError("ImageSet.concat needs at least one set")
        prompt_index = None
        if all(s.prompt_index is not None for s in sets):
            prompt_index, offset = [], 0
            for s in sets:
                prompt_index += [offset + i for i in s.prompt_index]
                offset += max(s.prompt_index, default=-1) + 1
        reports = None
        if all(s.reports is not None for s in sets):
            reports = [r for s in sets for r in s.reports]
        return ImageSet(
            torch.cat([s.images for s in sets]),
            torch.cat([s.labels for s in sets]),
            [p for s in sets for p in s.prompts],
            [i for s in sets for i in s.ids],
            prompt_index,
            reports,
        )


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Batch-contract pixels in [-1, 1] (any channel count) -> uint8, one channel."""
    if pixels.shape[-3] != 1:
        pixels = pixels.float().mean(dim=-3, keepdim=True)
    return ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class ImageSetDataset(Dataset):
    """An ImageSet in the batch contract: pixel_values (1, H, W) in [-1, 1] and labels (14,)."""

    def __init__(self, data: ImageSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        pixels = self.data.images[index].float() / 127.5 - 1.0
        return {"pixel_values": pixels, "labels": self.data.labels[index]}
