"""Write a trained model as a diffusers directory that plain diffusers (and transformers) load.

Every variant gives a `StableDiffusionPipeline` directory (safetensors): LoRA adapters are merged into the
base weights, new textual-inversion tokens are written into the tokenizer and merged into the embedding
table. A model whose text side diffusers' pipeline cannot represent (a non-CLIP encoder, a text projection,
a prompt length other than the tokenizer's, a padding mask) gets, beside the pipeline, `text_projection/` (when it has one), `text_conditioning.json` and a README
with the few lines that compute `prompt_embeds` (see docs/variants.md). An export into the folder of an
earlier one first deletes what that one wrote (`clear_earlier_export`), so nothing of its text side is left.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diffusers import StableDiffusionPipeline

from cxr_ldm.errors import ConfigError
from cxr_ldm.models.latent_diffusion import LatentDiffusion
from cxr_ldm.models.lora import merged_copy
from cxr_ldm.models.samplers import make_sampler
from cxr_ldm.models.textual_inversion import merged_encoder
from cxr_ldm.output_folders import check_output_folder

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
    out = pipeline_folder(out_dir)
    clear_earlier_export(out)
    model = model.cpu()
    with model.ema_scope(ema):
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
        pipeline.save_pretrained(out, safe_serialization=True)
        if model.text.projection is not None:
            model.text.projection.save(out / PROJECTION_DIR)
        if needs_custom_text(model):
            conditioning = {
                "max_length": model.text.max_length,
                "use_attention_mask": model.text.use_attention_mask,
                "projection": PROJECTION_DIR if model.text.projection is not None else None,
            }
            (out / CONDITIONING_FILE).write_text(json.dumps(conditioning, indent=2) + "\n")
            (out / "README.md").write_text(README.replace("{folder}", str(out)))
    return out


def export_vae(model, out_dir: str | Path) -> Path:
    """Write an `Autoencoder`'s VAE in diffusers format (`AutoencoderKL.from_pretrained(out_dir)`)."""
    out = check_output_folder(out_dir, "--out", "the VAE")
    model.cpu().vae.save_pretrained(out, safe_serialization=True)
    return out


def pipeline_folder(out_dir: str | Path) -> Path:
    """`out_dir` as the folder of a pipeline export: new, empty, or an earlier export (its model_index.json),
    which the export replaces. A file, or a folder of other files the pipeline would be mixed into, is a
    ConfigError naming the folder and the fix."""
    out = check_output_folder(out_dir, "--out", "the pipeline")
    if out.is_dir() and not (out / "model_index.json").is_file() and any(out.iterdir()):
        raise ConfigError(
            f"--out {out} holds other files and no earlier export (no model_index.json); give a new or empty "
            "folder for the pipeline"
        )
    return out


def clear_earlier_export(out: Path) -> list[Path]:
    """Delete what an earlier pipeline export wrote into `out` (the components its model_index.json names,
    the text side: text_conditioning.json, text_projection/, the README it wrote), so a new export leaves
    nothing of it behind: an earlier text side would change how the folder encodes prompts. Other files are
    left alone. Returns what was deleted."""
    index = out / "model_index.json"
    if not index.is_file():
        return []
    try:
        listed = json.loads(index.read_text()).items()
        # a component is a subfolder named like an identifier: a name with a separator is no folder of ours
        components = [name for name, value in listed if isinstance(value, list) and name.isidentifier()]
    except ValueError:
        components = []
    readme = out / "README.md"
    ours = readme.is_file() and readme.read_text(errors="replace").startswith(README.splitlines()[0])
    gone = []
    for path in [*(out / name for name in components), out / PROJECTION_DIR, out / CONDITIONING_FILE,
                 *([readme] if ours else []), index]:  # fmt: skip
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        gone.append(path)
    return gone
