"""What every evaluator does first to a batch of images: one gray channel at the evaluator's side."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gray_at(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, size, size): channels averaged, resized with antialiasing when needed."""
    if pixels.shape[1] != 1:
        pixels = pixels.mean(dim=1, keepdim=True)
    if pixels.shape[-2:] != (size, size):
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True)
    return pixels
