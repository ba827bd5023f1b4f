"""MS-SSIM between samples of one prompt: 1 = identical, lower = more diverse."""

from __future__ import annotations

from itertools import combinations

import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from cxr_ldm.errors import ConfigError

DEFAULT_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# torchmetrics sizes its Gaussian window from sigma (2 * int(3.5 * sigma + 0.5) + 1), not kernel_size.
SIGMA_OF_KERNEL = {11: 1.5, 7: 0.8, 5: 0.5, 3: 0.3}


def _fits(side: int, scales: int, kernel: int) -> bool:
    """torchmetrics needs side >= 2**scales and side > (kernel - 1) * (scales - 1)**2; the coarsest scale must
    still hold one window."""
    return (
        side >= 2**scales
        and side > (kernel - 1) * max(1, scales - 1) ** 2
        and side // 2 ** (scales - 1) >= kernel
    )


def ms_ssim_settings(side: int) -> tuple[tuple[float, ...], int]:
    """The most scales (up to 5) that an image of `side` px allows with a window of at least 7 px, and the
    largest window (11 or 7) at that many scales; only images too small for a 7-px window get 5 or 3 px.

    A window of 3 px (Gaussian sigma 0.3) weighs little more than one pixel: its contrast-structure term of
    two unrelated images is far from 0, so "more scales" must not be bought with it. 512 px images get the
    standard 5 scales and kernel 11; 64 px get 4 scales and kernel 7, 32 px 3 scales and kernel 7 (sigma 0.8).
    Fewer scales keep the leading weights, renormalised to sum to 1.
    """
    for kernels in ((11, 7), (5, 3)):
        for scales in range(5, 0, -1):
            for kernel in kernels:
                if _fits(side, scales, kernel):
                    betas = DEFAULT_BETAS[:scales]
                    total = sum(betas)
                    return tuple(b / total for b in betas), kernel
    raise ConfigError(f"images of {side} px are too small for MS-SSIM")


def ms_ssim_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per pair of (N, C, H, W) images in [0, 1]."""
    betas, kernel = ms_ssim_settings(min(a.shape[-2:]))
    return multiscale_structural_similarity_index_measure(
        a.float(),
        b.float(),
        data_range=1.0,
        betas=betas,
        kernel_size=kernel,
        sigma=SIGMA_OF_KERNEL[kernel],
        reduction="none",
    )


def ms_ssim_diversity(images01: torch.Tensor, groups: list[int]) -> float:
    """Mean MS-SSIM over all pairs of images that share a prompt (4 samples -> 6 pairs per prompt)."""
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    pairs = [p for members in by_group.values() for p in combinations(members, 2)]
    if not pairs:
        raise ConfigError("MS-SSIM diversity needs at least two samples of one prompt (--per-prompt >= 2)")
    first = torch.tensor([p[0] for p in pairs])
    second = torch.tensor([p[1] for p in pairs])
    values = torch.cat(
        [
            ms_ssim_pairs(images01[first[i : i + 256]], images01[second[i : i + 256]])
            for i in range(0, len(pairs), 256)
        ]
    )
    return float(values.mean())
