"""Write a trained model as a diffusers directory that plain diffusers (and transformers) load.

Every variant gives a `StableDiffusionPipeline` directory (safetensors): LoRA adapters are merged into the
base weights, new textual-inversion tokens are written into the tokenizer and merged into the embedding
table. A model whose text side diffusers' pipeline cannot represent (a non-CLIP encoder, a text projection,
a prompt length other than the tokenizer's, a padding mask) gets, beside the pipeline, `text_projection/` (when it has one), `text_conditioning.json` and a README
with the few lines that compute `prompt_embeds` (see docs/variants.md). An export replaces an earlier one
at the same path whole (nothing of its text side is left behind) and never a folder of other files.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import StableDiffusionPipeline

from cxr_ldm.data.atomic import replaced_folder
from cxr_ldm.errors import ConfigError
from cxr_ldm.models.latent_diffusion import LatentDiffusion
from cxr_ldm.models.lora import merged_copy
from cxr_ldm.models.samplers import make_sampler
from cxr_ldm.models.textual_inversion import merged_encoder

CONDITIONING_FILE = "text_conditioning.json"
PROJECTION_DIR = "text_projection"

README = """# Exported cxr-ldm pipeline with a custom text side

`StableDiffusionPipeline.from_pretrained` loads this folder, but its prompt encoding is not what the
model was trained with: compute `prompt_embeds` and the padding mask yourself (plain diffusers +
transformers + torch):

```python
import json, torch
from pathlib import Path
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

folder = Path("{folder}")
pipe = StableDiffusionPipeline.from_pretrained(folder)
text = json.loads((folder / "text_conditioning.json").read_text())
projection = None
if text["projection"]:
    cfg = json.loads((folder / text["projection"] / "config.json").read_text())
    layers = [torch.nn.Linear(cfg["in_features"], cfg["out_features"])] if cfg["kind"] == "linear" else [
        torch.nn.Linear(cfg["in_features"], cfg["hidden_features"]), torch.nn.GELU(),
        torch.nn.Linear(cfg["hidden_features"], cfg["out_features"])]
    projection = torch.nn.Sequential(*layers)
    projection.load_state_dict(load_file(folder / text["projection"] / "model.safetensors"))

@torch.no_grad()
def embed(prompts):  # (prompt_embeds, mask); the mask keeps the U-Net's cross-attention off padding
    tokens = pipe.tokenizer(prompts, padding="max_length", max_length=text["max_length"],
                            truncation=True, return_tensors="pt")
    mask = tokens["attention_mask"] if text["use_attention_mask"] else None
    hidden = pipe.text_encoder(input_ids=tokens["input_ids"], attention_mask=mask)[0]
    return (projection(hidden) if projection is not None else hidden), mask

def generate(prompts, negative="", **kwargs):
    cond, cond_mask = embed(prompts)
    uncond, uncond_mask = embed([negative] * len(prompts))
    hook = None
    if cond_mask is not None:  # the pipeline has no mask argument: hand it to the U-Net directly
        guided = torch.cat([uncond_mask, cond_mask])  # the pipeline's guided batch: negative, prompt
        def add_mask(unet, args, kw):
            kw["encoder_attention_mask"] = guided if args[0].shape[0] == guided.shape[0] else cond_mask
            return args, kw
        hook = pipe.unet.register_forward_pre_hook(add_mask, with_kwargs=True)
    try:
        return pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, **kwargs)
    finally:
        if hook is not None:
            hook.remove()

image = generate(["pleural effusion"], num_inference_steps=75, guidance_scale=4.0).images[0]
```
"""


def needs_custom_text(model: LatentDiffusion) -> bool:
    """True when the pipeline's own prompt encoding would differ from the trained one: a text projection, a
    non-CLIP encoder, a padding mask, or a prompt length other than the tokenizer's (which the pipeline pads
    to)."""
    text = model.text
    model_type = getattr(text.encoder.config, "model_type", "")
    return (
        text.projection is not None
        or not model_type.startswith("clip")
        or text.use_attention_mask
        or text.max_length != getattr(text.tokenizer, "model_max_length", None)
    )


def export_pipeline(
    model: LatentDiffusion, out_dir: str | Path, ema: bool | None = None, scheduler: str = "pndm"
) -> Path:
    """Save the model so `StableDiffusionPipeline.from_pretrained(out_dir)` loads it.

    `ema`: True writes the EMA weights, False the raw ones; None (the default) writes the EMA weights when
    the model keeps them, as sampling, validation and `generate` use them.
    """
    if ema is None:
        ema = model.ema is not None
    if ema and model.ema is None:
        raise ConfigError(
            "--ema was asked for, but this model was trained without EMA (model.init_args.ema.decay)"
        )
    out = Path(out_dir)
    model = model.cpu()
    with replaced_folder(out, "model_index.json") as folder, model.ema_scope(ema):
        pipeline = StableDiffusionPipeline(
            vae=model.vae,
            text_encoder=merged_encoder(merged_copy(model.text.encoder)),
            tokenizer=model.text.tokenizer,
            unet=merged_copy(model.unet),
            scheduler=make_sampler(scheduler, model.noise_scheduler.config),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.save_pretrained(folder, safe_serialization=True)
        if model.text.projection is not None:
            model.text.projection.save(folder / PROJECTION_DIR)
        if needs_custom_text(model):
            conditioning = {
                "max_length": model.text.max_length,
                "use_attention_mask": model.text.use_attention_mask,
                "projection": PROJECTION_DIR if model.text.projection is not None else None,
            }
            (folder / CONDITIONING_FILE).write_text(json.dumps(conditioning, indent=2) + "\n")
            (folder / "README.md").write_text(README.replace("{folder}", str(out)))
    return out


def export_vae(model, out_dir: str | Path) -> Path:
    """Write an `Autoencoder`'s VAE in diffusers format (`AutoencoderKL.from_pretrained(out_dir)`)."""
    out = Path(out_dir)
    with replaced_folder(out, "config.json") as folder:
        model.cpu().vae.save_pretrained(folder, safe_serialization=True)
    return out
