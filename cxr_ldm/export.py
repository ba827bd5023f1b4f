"""Write a trained LatentDiffusion as a plain diffusers pipeline directory (safetensors)."""

from __future__ import annotations

from pathlib import Path

from cxr_ldm.models.latent_diffusion import LatentDiffusion


def export_pipeline(
    model: LatentDiffusion, out_dir: str | Path, ema: bool = False, scheduler: str = "pndm"
) -> Path:
    """Save the model (EMA weights when `ema`) so `StableDiffusionPipeline.from_pretrained(out_dir)` loads it."""
    if ema and model.ema is None:
        raise ValueError(
            "--ema was asked for, but this model was trained without EMA (model.init_args.ema_decay)"
        )
    if model.text.projection is not None:
        raise ValueError(
            "this model's text encoder has a projection that diffusers' StableDiffusionPipeline cannot hold"
        )
    out = Path(out_dir)
    model = model.cpu()
    with model.ema_scope(ema):
        model.build_pipeline(scheduler).save_pretrained(out, safe_serialization=True)
    return out
