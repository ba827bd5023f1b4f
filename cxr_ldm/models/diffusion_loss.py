"""The denoising objective: noise latents at a random timestep and regress the noise (or `v`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

from cxr_ldm.errors import ConfigError


def add_training_noise(
    latents: torch.Tensor,
    scheduler: DDPMScheduler,
    noise_offset: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (noisy latents, noise, timesteps); `noise_offset` adds per-channel offset noise."""
    batch, channels = latents.shape[:2]
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    if noise_offset:
        offset = torch.randn((batch, channels, 1, 1), generator=generator, device=latents.device)
        noise = noise + noise_offset * offset.to(latents.dtype)
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (batch,), generator=generator, device=latents.device
    )
    return scheduler.add_noise(latents, noise, timesteps), noise, timesteps


def prediction_target(
    scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ConfigError(f"unsupported prediction_type '{kind}' (use epsilon or v_prediction)")


def diffusion_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    scheduler: DDPMScheduler,
    timesteps: torch.Tensor,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """MSE, optionally Min-SNR-gamma weighted per sample."""
    prediction, target = prediction.float(), target.float()
    if snr_gamma is None:
        return F.mse_loss(prediction, target)
    snr = compute_snr(scheduler, timesteps)
    weights = torch.clamp(snr, max=snr_gamma) / snr
    if scheduler.config.prediction_type == "v_prediction":
        weights = torch.clamp(snr, max=snr_gamma) / (snr + 1)
    per_sample = F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weights).mean()
