"""Memorization (a privacy check): how close is each generated image to its nearest training image?

Two spaces: pixels (RMSE after resizing both sets to at most 64 px: catches copies pixel for pixel) and the
evaluator's features (cosine distance: catches copies that moved, brightened or blurred a little). In each,
held-out real images measured the same way say what "near" means for images that are certainly not copies:
the fraction of generated images closer to the training set than the closest 1% of held-out real images is
about 0.01 for a model that does not copy. `memorization_grid` draws the closest pairs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

QUANTILES = (0.01, 0.05, 0.5)


def _flat_pixels(x: torch.Tensor, side: int) -> torch.Tensor:
    x = x.float().mean(dim=1, keepdim=True)
    if x.shape[-1] != side or x.shape[-2] != side:
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
    return x.flatten(1)


def nearest_pixel_neighbours(
    query01: torch.Tensor, gallery01: torch.Tensor, side: int = 64, chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, the RMSE (in [0, 1] pixel units, both sets resized to `side` px) to its nearest gallery
    image, and that image's index."""
    gallery = _flat_pixels(gallery01, side)
    best, index = [], []
    for i in range(0, len(query01), chunk):
        distances = torch.cdist(_flat_pixels(query01[i : i + chunk], side), gallery) / gallery.shape[1] ** 0.5
        found = distances.min(dim=1)
        best.append(found.values)
        index.append(found.indices)
    return torch.cat(best), torch.cat(index)


def nearest_pixel_distance(
    query01: torch.Tensor, gallery01: torch.Tensor, side: int = 64, chunk: int = 256
) -> torch.Tensor:
    """Per query, the RMSE (in [0, 1] pixel units, after resizing both sets to `side` px) to its nearest gallery image."""
    return nearest_pixel_neighbours(query01, gallery01, side, chunk)[0]


def nearest_feature_neighbours(
    query_features: torch.Tensor, gallery_features: torch.Tensor, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, the cosine distance (1 - cosine similarity, 0 = same direction) to its nearest gallery
    feature vector, and its index."""
    gallery = F.normalize(gallery_features.float(), dim=-1)
    best, index = [], []
    for i in range(0, len(query_features), chunk):
        similarity = F.normalize(query_features[i : i + chunk].float(), dim=-1) @ gallery.t()
        found = similarity.max(dim=1)
        best.append((1 - found.values).clamp(min=0))
        index.append(found.indices)
    return torch.cat(best), torch.cat(index)


def distance_summary(
    prefix: str, distances: torch.Tensor, reference: torch.Tensor | None = None
) -> dict[str, float]:
    """Min, mean and quantiles of nearest-training distances; with held-out `reference` distances, their mean
    and the fraction of `distances` under the reference's 1% quantile."""
    out = {
        f"{prefix}_min_distance": float(distances.min()),
        f"{prefix}_mean_distance": float(distances.mean()),
    }
    for q in QUANTILES:
        out[f"{prefix}_distance_p{round(q * 100):02d}"] = float(torch.quantile(distances.double(), q))
    if reference is not None and len(reference):
        out[f"{prefix}_reference_mean_distance"] = float(reference.mean())
        cut = float(torch.quantile(reference.double(), 0.01))
        out[f"{prefix}_reference_distance_p01"] = cut
        out[f"{prefix}_fraction_below_reference_p01"] = float((distances < cut).float().mean())
    return out


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
    side = memorization_side(generated01, train01)
    distances = nearest_pixel_distance(generated01, train01, side)
    reference = None
    if reference01 is not None and len(reference01):
        reference = nearest_pixel_distance(reference01, train01, side)
    return pixel_memorization(distances, reference, threshold)


def memorization_side(generated01: torch.Tensor, train01: torch.Tensor) -> int:
    return min(64, *generated01.shape[-2:], *train01.shape[-2:])


def pixel_memorization(
    distances: torch.Tensor, reference: torch.Tensor | None, threshold: float
) -> dict[str, float]:
    """The pixel-space metrics from nearest-training RMSEs (generated, and held-out real as the reference)."""
    out = distance_summary("memorization", distances, reference)
    out["memorization_fraction_below_threshold"] = float((distances < threshold).float().mean())
    out["memorization_threshold"] = threshold
    return out


def memorization_grid(
    generated01: torch.Tensor,
    train01: torch.Tensor,
    distances: torch.Tensor,
    nearest: torch.Tensor,
    path: str | Path,
    pairs: int = 8,
    tile: int = 96,
    title: str = "",
) -> Path:
    """A PNG of the `pairs` closest (generated, nearest training image) pairs, closest first: one pair per
    row, generated left, training right, the distance written under each row."""
    from PIL import Image, ImageDraw

    order = torch.argsort(distances)[:pairs].tolist()
    caption = 14
    header = caption if title else 0
    sheet = Image.new("L", (2 * tile + 4, header + len(order) * (tile + caption)), 255)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((2, 1), title, fill=0)

    def tile_of(image01: torch.Tensor) -> Image.Image:
        gray = image01.float().mean(dim=0).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
        return Image.fromarray(gray, mode="L").resize((tile, tile), Image.NEAREST)

    for row, i in enumerate(order):
        top = header + row * (tile + caption)
        j = int(nearest[i])
        sheet.paste(tile_of(generated01[i]), (0, top))
        sheet.paste(tile_of(train01[j]), (tile + 4, top))
        draw.text((2, top + tile + 1), f"generated {i} ~ train {j}: {float(distances[i]):.4f}", fill=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
