"""RMSE, PSNR and SSIM of reconstructions (torchmetrics): the one definition the VAE's validation and the
evaluation's reconstruction study share."""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def image_metrics(reconstructed01: torch.Tensor, original01: torch.Tensor) -> dict[str, torch.Tensor]:
    """RMSE (mean over images), PSNR (dB, from the batch's mean squared error) and SSIM of (N, C, H, W)
    images in [0, 1], data range 1; the one definition the VAE's validation and the evaluation share."""
    a, b = original01.float(), reconstructed01.float()
    kernel = 11 if min(a.shape[-2:]) >= 11 else 3
    return {
        "rmse": ((a - b) ** 2).mean(dim=(1, 2, 3)).sqrt().mean(),
        "psnr": peak_signal_noise_ratio(b, a, data_range=1.0),
        "ssim": structural_similarity_index_measure(b, a, data_range=1.0, kernel_size=kernel),
    }
