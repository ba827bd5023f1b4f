"""Images from a `LatentDiffusion`: a diffusers pipeline sharing its modules, sampling one image per (prompt,
seed), and decoding latents to images."""

from __future__ import annotations

import torch
from diffusers import StableDiffusionPipeline

from cxr_ldm.generation.cross_attention_masks import cross_attention_masks
from cxr_ldm.models import LatentDiffusion
from cxr_ldm.models.samplers import make_sampler


def build_pipeline(model: LatentDiffusion, scheduler: str = "pndm") -> StableDiffusionPipeline:
    """A diffusers pipeline sharing the model's modules (no copy)."""
    pipeline = StableDiffusionPipeline(
        vae=model.vae,
        text_encoder=model.text.encoder,
        tokenizer=model.text.tokenizer,
        unet=model.unet,
        scheduler=make_sampler(scheduler, model.noise_scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@torch.no_grad()
def sample(
    model: LatentDiffusion,
    prompts: list[str],
    seeds: list[int],
    num_inference_steps: int = 75,
    guidance_scale: float = 4.0,
    scheduler: str = "pndm",
    use_ema: bool = True,
    negative_prompt: str = "",
) -> torch.Tensor:
    """Generate one image per (prompt, seed): float32 (B, C, H, W) in [0, 1] on the CPU.

    The U-Net runs in the ambient precision; the VAE decodes in float32 so half-precision VAEs
    cannot produce black images.
    """
    if len(prompts) != len(seeds):
        raise ValueError("sample() needs one seed per prompt")
    was_training = model.training  # a frozen U-Net always reports eval (LoRA, projection runs)
    model.unet.eval()
    model.text.eval()
    try:
        with (
            model.ema_scope(use_ema),
            model.frozen_dtype.originals(),
            cross_attention_masks(model.text, model.unet, prompts, negative_prompt) as embeds,
        ):
            context, uncond = embeds
            generators = [torch.Generator(device=model.device).manual_seed(int(s)) for s in seeds]
            pipeline = build_pipeline(model, scheduler)
            latents = pipeline(
                prompt_embeds=context.to(model.unet.dtype),
                negative_prompt_embeds=uncond.to(model.unet.dtype),
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generators,
                output_type="latent",
            ).images
            return decode_latents(model, latents)
    finally:
        if was_training:
            model.unet.train()
            model.text.train()


@torch.no_grad()
def decode_latents(model: LatentDiffusion, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents to float32 images in [0, 1] on the CPU, decoded by a float32 VAE."""
    device_type = latents.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        vae_dtype = model.vae.dtype
        if vae_dtype != torch.float32:
            model.vae.float()
        try:
            images = model.vae.decode(latents.float() / model.vae_scale).sample
        finally:
            if vae_dtype != torch.float32:
                model.vae.to(vae_dtype)
    return ((images.float() + 1) / 2).clamp(0, 1).cpu()
