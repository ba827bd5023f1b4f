"""Memorization (a privacy check): how close is each generated image to its nearest training image?"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nearest_pixel_distance(
    query01: torch.Tensor, gallery01: torch.Tensor, side: int = 64, chunk: int = 256
) -> torch.Tensor:
    """Per query, the RMSE (in [0, 1] pixel units, after resizing both sets to `side` px) to its nearest gallery image."""

    def flat(x: torch.Tensor) -> torch.Tensor:
        x = x.float().mean(dim=1, keepdim=True)
        if x.shape[-1] != side or x.shape[-2] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
        return x.flatten(1)

    gallery = flat(gallery01)
    best = []
    for i in range(0, len(query01), chunk):
        distances = torch.cdist(flat(query01[i : i + chunk]), gallery) / gallery.shape[1] ** 0.5
        best.append(distances.min(dim=1).values)
    return torch.cat(best)


def memorization_metrics(
    generated01: torch.Tensor,
    train01: torch.Tensor,
    reference01: torch.Tensor | None = None,
    threshold: float = 0.02,
) -> dict[str, float]:
    """Min / mean nearest-training-image RMSE of generated images and the fraction under `threshold`.

    `reference01` (real held-out images) gives the same distance for images that are certainly not copies,
    so a generated set far below it is suspicious.
    """
    side = min(64, *generated01.shape[-2:], *train01.shape[-2:])
    distances = nearest_pixel_distance(generated01, train01, side)
    out = {
        "memorization_min_distance": float(distances.min()),
        "memorization_mean_distance": float(distances.mean()),
        "memorization_fraction_below_threshold": float((distances < threshold).float().mean()),
        "memorization_threshold": threshold,
    }
    if reference01 is not None and len(reference01):
        out["memorization_reference_mean_distance"] = float(
            nearest_pixel_distance(reference01, train01, side).mean()
        )
    return out
