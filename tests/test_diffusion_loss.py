"""The denoising objective: targets per prediction type, Min-SNR weights, offset noise."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from cxr_ldm.models.diffusion_loss import add_training_noise, diffusion_loss, prediction_target


@pytest.fixture
def scheduler():
    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def test_noisy_latents_follow_the_schedule(scheduler):
    latents = torch.randn(3, 4, 8, 8)
    generator = torch.Generator().manual_seed(0)
    noisy, noise, timesteps = add_training_noise(latents, scheduler, generator=generator)
    alpha = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    assert torch.allclose(noisy, alpha.sqrt() * latents + (1 - alpha).sqrt() * noise, atol=1e-5)


def test_offset_noise_shifts_each_channel_by_a_constant(scheduler):
    latents = torch.zeros(2, 4, 16, 16)
    _, plain, _ = add_training_noise(latents, scheduler, 0.0, torch.Generator().manual_seed(1))
    _, offset, _ = add_training_noise(latents, scheduler, 10.0, torch.Generator().manual_seed(1))
    shift = offset - plain
    assert shift.abs().mean() > 1.0
    assert torch.allclose(shift, shift[..., :1, :1].expand_as(shift), atol=1e-4)


def test_targets_per_prediction_type(scheduler):
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    timesteps = torch.tensor([10, 900])
    assert torch.equal(prediction_target(scheduler, latents, noise, timesteps), noise)
    scheduler.register_to_config(prediction_type="v_prediction")
    alpha = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    velocity = alpha.sqrt() * noise - (1 - alpha).sqrt() * latents
    assert torch.allclose(prediction_target(scheduler, latents, noise, timesteps), velocity, atol=1e-5)


def test_min_snr_weighting_downweights_low_noise_steps(scheduler):
    prediction, target = torch.ones(2, 4, 8, 8), torch.zeros(2, 4, 8, 8)
    low_noise, high_noise = torch.tensor([1, 1]), torch.tensor([999, 999])
    plain = diffusion_loss(prediction, target, scheduler, low_noise)
    assert plain == pytest.approx(1.0)
    weighted_low = diffusion_loss(prediction, target, scheduler, low_noise, snr_gamma=5.0)
    weighted_high = diffusion_loss(prediction, target, scheduler, high_noise, snr_gamma=5.0)
    assert weighted_low < 0.1  # SNR is huge at t=1, so min(SNR, 5) / SNR is tiny
    assert weighted_high == pytest.approx(1.0)  # SNR < 5: weight 1
