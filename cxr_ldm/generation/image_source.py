"""One `sample(prompts, seeds, ...)` for a LatentDiffusion checkpoint and for a diffusers pipeline directory."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from cxr_ldm.checkpoints import check_checkpoint_file, load_checkpoint
from cxr_ldm.errors import ConfigError
from cxr_ldm.generation.cross_attention_masks import cross_attention_masks
from cxr_ldm.generation.sampling import sample
from cxr_ldm.models.samplers import make_sampler
from cxr_ldm.models.text_conditioner import TextConditioner


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
    """A diffusers `StableDiffusionPipeline` directory (for example one written by `cxr_ldm export`). `text`:
    the trained text side that such a folder describes in `text_conditioning.json` (`exported_text`), used
    instead of the pipeline's own prompt encoding."""

    def __init__(
        self, pipeline, device: torch.device | str = "cpu", text: TextConditioner | None = None
    ) -> None:
        self.pipeline = pipeline.to(device)
        self.pipeline.set_progress_bar_config(disable=True)
        self.device = torch.device(device)
        self._scheduler_config = pipeline.scheduler.config
        self.text = None if text is None else text.to(device).eval()

    @torch.no_grad()
    def sample(
        self, prompts, seeds, num_inference_steps=75, guidance_scale=4.0, scheduler="pndm"
    ) -> torch.Tensor:
        if len(prompts) != len(seeds):
            raise ValueError("sample() needs one seed per prompt")
        self.pipeline.scheduler = make_sampler(scheduler, self._scheduler_config)
        generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        settings = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                    "generator": generators, "output_type": "pt"}  # fmt: skip
        if self.text is None:
            images = self.pipeline(list(prompts), **settings).images
        else:
            with cross_attention_masks(self.text, self.pipeline.unet, list(prompts), "") as (context, uncond):
                images = self.pipeline(
                    prompt_embeds=context, negative_prompt_embeds=uncond, **settings
                ).images
        return images.float().clamp(0, 1).cpu()

    def vae(self):
        return self.pipeline.vae


def exported_text(folder: Path, pipeline) -> TextConditioner | None:
    """The text side an exported folder describes in `text_conditioning.json` (a domain encoder, a text
    projection, a prompt length or padding mask other than the pipeline's): the pipeline's tokenizer and
    encoder with that length and mask, and the folder's projection. None for a folder without the file."""
    import json

    from cxr_ldm.generation.export import CONDITIONING_FILE
    from cxr_ldm.models.text_projection import load_projection

    record = folder / CONDITIONING_FILE
    if not record.is_file():
        return None
    try:
        spec = json.loads(record.read_text())
        max_length, use_mask = int(spec["max_length"]), bool(spec["use_attention_mask"])
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{record} is damaged ({error.__class__.__name__}: {error}); export the model again "
            "(`python -m cxr_ldm export`)"
        ) from None
    projection = None
    if spec.get("projection"):
        projection = load_projection(folder / spec["projection"], f"{record} projection")
    return TextConditioner(pipeline.text_encoder, pipeline.tokenizer, projection, max_length, use_mask)


def check_image_source(path: str | Path, option: str = "--model") -> Path:
    """`path` as a Path once it is known to be a diffusers pipeline directory or a LatentDiffusion checkpoint;
    a ConfigError naming `option` (the command's option or the config key that gave it) otherwise."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ConfigError(
                f"{option} {path} is a directory without model_index.json; give a diffusers pipeline directory "
                "(`python -m cxr_ldm export`) or a LatentDiffusion .ckpt file"
            )
        return path
    return check_checkpoint_file(path, "LatentDiffusion", option)


def load_image_source(
    path: str | Path,
    device: torch.device | str = "cpu",
    pretrained: str | None = None,
    option: str = "--model",
) -> CheckpointSource | PipelineSource:
    """A checkpoint file (.ckpt) or a diffusers pipeline directory (with model_index.json), given by `option`.
    `pretrained`: where a checkpoint's pretrained pipeline is now, if it moved (`checkpoints.load_checkpoint`)."""
    path = Path(path)
    if path.is_dir():
        check_image_source(path, option)  # a checkpoint file is checked as load_checkpoint reads it
        if pretrained is not None:
            raise ConfigError(
                f"--pretrained {pretrained}: {option} {path} is a pipeline folder, which holds every part itself; "
                "--pretrained names where a .ckpt's pretrained pipeline is now: drop it"
            )
        from diffusers import StableDiffusionPipeline

        try:
            pipeline = StableDiffusionPipeline.from_pretrained(
                path, safety_checker=None, requires_safety_checker=False
            )
        except (OSError, ValueError, RuntimeError) as error:  # a weights file missing or cut short
            first = str(error).strip().splitlines()
            raise ConfigError(
                f"{option} {path}: the pipeline could not be loaded ({first[0] if first else error.__class__.__name__}); "
                "export the model again (`python -m cxr_ldm export`)"
            ) from None
        return PipelineSource(pipeline, device, exported_text(path, pipeline))
    from cxr_ldm.models import LatentDiffusion

    return CheckpointSource(load_checkpoint(path, LatentDiffusion, option, pretrained), device)
