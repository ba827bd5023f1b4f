"""One `sample(prompts, seeds, ...)` for a LatentDiffusion checkpoint and for a diffusers pipeline directory."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from cxr_ldm.checkpoints import load_checkpoint
from cxr_ldm.errors import ConfigError
from cxr_ldm.generation.sampling import sample
from cxr_ldm.models.samplers import make_sampler


class ImageSource(Protocol):
    """Anything that turns prompts and seeds into float32 (B, 3, H, W) images in [0, 1] on the CPU."""

    def sample(
        self,
        prompts: list[str],
        seeds: list[int],
        num_inference_steps: int = 75,
        guidance_scale: float = 4.0,
        scheduler: str = "pndm",
    ) -> torch.Tensor: ...

    def vae(self): ...


class CheckpointSource:
    """A `LatentDiffusion` (EMA weights when it keeps them)."""

    def __init__(self, model, device: torch.device | str = "cpu") -> None:
        self.model = model.to(device).eval()

    def sample(
        self, prompts, seeds, num_inference_steps=75, guidance_scale=4.0, scheduler="pndm"
    ) -> torch.Tensor:
        return sample(
            self.model,
            list(prompts),
            list(seeds),
            num_inference_steps,
            guidance_scale,
            scheduler=scheduler,
            use_ema=True,
        )

    def vae(self):
        return self.model.vae


class PipelineSource:
    """A diffusers `StableDiffusionPipeline` directory (for example one written by `cxr_ldm export`)."""

    def __init__(self, pipeline, device: torch.device | str = "cpu") -> None:
        self.pipeline = pipeline.to(device)
        self.pipeline.set_progress_bar_config(disable=True)
        self.device = torch.device(device)
        self._scheduler_config = pipeline.scheduler.config

    @torch.no_grad()
    def sample(
        self, prompts, seeds, num_inference_steps=75, guidance_scale=4.0, scheduler="pndm"
    ) -> torch.Tensor:
        if len(prompts) != len(seeds):
            raise ValueError("sample() needs one seed per prompt")
        self.pipeline.scheduler = make_sampler(scheduler, self._scheduler_config)
        generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        images = self.pipeline(
            list(prompts),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generators,
            output_type="pt",
        ).images
        return images.float().clamp(0, 1).cpu()

    def vae(self):
        return self.pipeline.vae


def load_image_source(
    path: str | Path, device: torch.device | str = "cpu"
) -> CheckpointSource | PipelineSource:
    """A checkpoint file (.ckpt) or a diffusers pipeline directory (with model_index.json)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ConfigError(
                f"--model {path} is a directory without model_index.json; give a diffusers pipeline directory "
                "(`python -m cxr_ldm export`) or a LatentDiffusion .ckpt file"
            )
        from diffusers import StableDiffusionPipeline

        pipeline = StableDiffusionPipeline.from_pretrained(
            path, safety_checker=None, requires_safety_checker=False
        )
        return PipelineSource(pipeline, device)
    from cxr_ldm.models import LatentDiffusion

    return CheckpointSource(load_checkpoint(path, LatentDiffusion, "--model"), device)
