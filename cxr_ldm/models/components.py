"""Load the Stable Diffusion components from a diffusers pipeline, or build each from an explicit config.

A component given an explicit config is built from it (random weights: how tests and laptops get tiny
models); every other component is loaded from `pretrained_model_name_or_path`, a hub id or a local
diffusers pipeline directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import AutoModel, AutoTokenizer, CLIPTextConfig, CLIPTextModel, PreTrainedModel

from cxr_ldm.models.clip_tokenizer import clip_tokenizer
from cxr_ldm.pretrained import (  # noqa: F401 - the sources part of this module's interface
    PACKAGE_PREFIX,
    ComponentLoadError,
    check_source,
    looks_like_path,
    resolve_source,
)

CLIP_TOKENIZER = "clip"  # the `tokenizer` value that loads CLIP's tokenizer shipped in cxr_ldm/assets


@dataclass
class DiffusionComponents:
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_encoder: PreTrainedModel
    tokenizer: Any
    noise_scheduler: DDPMScheduler


def _load(loader, name: str, what: str, key: str, **kwargs):
    try:
        return loader(name, **kwargs)
    except (OSError, ValueError) as error:
        if Path(name).expanduser().is_dir():  # a local folder: nothing to download, a part of it to mend
            part = Path(name) / kwargs["subfolder"] if kwargs.get("subfolder") else Path(name)
            raise ComponentLoadError(
                f"could not load the {what} from the local folder {part} ({key}): {error.__class__.__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}\n"
                f"The folder is incomplete or damaged: {part} must hold the {what}'s config and weights as a "
                f"diffusers pipeline folder does; copy the pipeline again, or set {key} to a complete one."
            ) from error
        raise ComponentLoadError(
            f"could not load the {what} from '{name}' (config key {key}): {error.__class__.__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}\n"
            "It is neither a complete local directory nor a hub id available offline. On a machine with "
            f"network access run `hf download {name} --local-dir DIR` (`huggingface-cli download` before huggingface_hub 1.0), then set {key}: DIR."
        ) from error


def load_components(
    pretrained_model_name_or_path: str | None = None,
    revision: str | None = None,
    vae_config: dict | None = None,
    unet_config: dict | None = None,
    text_encoder_config: dict | None = None,
    text_encoder_name_or_path: str | None = None,
    tokenizer: str | None = None,
    scheduler_config: dict | None = None,
) -> DiffusionComponents:
    """Build or load every component; see the module docstring for the rules."""
    base = resolve_source(pretrained_model_name_or_path)
    text_encoder_name_or_path = resolve_source(text_encoder_name_or_path)
    tokenizer = tokenizer if tokenizer == CLIP_TOKENIZER else resolve_source(tokenizer)
    key = "model.init_args.components.pretrained_model_name_or_path"
    if base is not None:
        check_source(base)
    if text_encoder_name_or_path is not None:
        check_source(text_encoder_name_or_path, "model.init_args.components.text_encoder_name_or_path")

    def need_base(what: str) -> str:
        if base is None:
            raise ComponentLoadError(
                f"no {what}: give model.init_args.components.{what}_config, or components.pretrained_model_name_or_path to load it"
            )
        return base

    common = {"revision": revision}
    if vae_config is not None:
        vae = AutoencoderKL(**vae_config)
    else:
        vae = _load(AutoencoderKL.from_pretrained, need_base("vae"), "VAE", key, subfolder="vae", **common)
    if unet_config is not None:
        unet = UNet2DConditionModel(**unet_config)
    else:
        unet = _load(
            UNet2DConditionModel.from_pretrained, need_base("unet"), "U-Net", key, subfolder="unet", **common
        )

    text_encoder, tok = load_text_side(
        base,
        revision,
        text_encoder_config,
        text_encoder_name_or_path,
        tokenizer,
        "model.init_args.components.",
    )

    if scheduler_config is not None:
        noise_scheduler = DDPMScheduler(**scheduler_config)
    elif base is not None:
        noise_scheduler = _load(
            DDPMScheduler.from_pretrained, base, "noise scheduler", key, subfolder="scheduler", **common
        )
    else:
        noise_scheduler = DDPMScheduler(
            num_train_timesteps=1000,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            clip_sample=False,
        )
    return DiffusionComponents(vae, unet, text_encoder, tok, noise_scheduler)


def load_text_side(
    base: str | None,
    revision: str | None,
    text_encoder_config: dict | None = None,
    text_encoder_name_or_path: str | None = None,
    tokenizer: str | None = None,
    prefix: str = "model.init_args.",
) -> tuple[PreTrainedModel, Any]:
    """Text encoder and tokenizer: CLIP built from config, any HF encoder, or the pipeline's own CLIP."""
    base = resolve_source(base)
    text_encoder_name_or_path = resolve_source(text_encoder_name_or_path)
    tokenizer = tokenizer if tokenizer == CLIP_TOKENIZER else resolve_source(tokenizer)
    key = f"{prefix}pretrained_model_name_or_path"
    text_key = f"{prefix}text_encoder_name_or_path"
    common = {"revision": revision}
    if text_encoder_name_or_path is not None:
        check_source(text_encoder_name_or_path, text_key)
    if tokenizer not in (None, CLIP_TOKENIZER):
        check_source(tokenizer, f"{prefix}tokenizer_name_or_path")

    def from_base(loader, what: str):
        """The pipeline's own `what` (its subfolder of `base`)."""
        if base is None:
            raise ComponentLoadError(f"no {what}: give {prefix}{what}_config, or {key} to load it")
        return _load(loader, base, what.replace("_", " "), key, subfolder=what, **common)

    if text_encoder_config is not None:
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_encoder_config))
    elif text_encoder_name_or_path is not None:
        text_encoder = _load(AutoModel.from_pretrained, text_encoder_name_or_path, "text encoder", text_key)
    else:
        text_encoder = from_base(CLIPTextModel.from_pretrained, "text_encoder")

    if tokenizer == CLIP_TOKENIZER:
        tok = clip_tokenizer()
    elif tokenizer is not None:
        tok = _load(AutoTokenizer.from_pretrained, tokenizer, "tokenizer", f"{prefix}tokenizer_name_or_path")
    elif text_encoder_name_or_path is not None:
        tok = _load(AutoTokenizer.from_pretrained, text_encoder_name_or_path, "tokenizer", text_key)
    else:
        tok = from_base(AutoTokenizer.from_pretrained, "tokenizer")
    return text_encoder, tok


def latent_scaling_factor(vae: AutoencoderKL) -> float:
    return float(getattr(vae.config, "scaling_factor", 0.18215))


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def load_diffusion_components(spec) -> tuple[DiffusionComponents, dict[str, tuple[str, list[torch.Tensor]]]]:
    """The components the `components` part (`cxr_ldm.models.diffusion_parts.Components`) `spec` names, with
    its prediction type; and {component: (source, its tensors)} for those loaded from a pretrained source.

    A text encoder's pooler (BERT family) is dropped: only the hidden states condition the U-Net, and a
    pooler would get no gradient, which DDP refuses on the next step, and would sit in the optimizer for
    nothing.
    """
    parts = load_components(
        spec.pretrained_model_name_or_path,
        spec.revision,
        spec.vae_config,
        spec.unet_config,
        spec.text_encoder_config,
        spec.text_encoder_name_or_path,
        spec.tokenizer_name_or_path,
        spec.scheduler_config,
    )
    if spec.prediction_type is not None:
        # from_config (not register_to_config): diffusers drops values it thinks are defaults when a
        # config is copied into another scheduler, which would lose the override at sampling and export.
        parts.noise_scheduler = type(parts.noise_scheduler).from_config(
            parts.noise_scheduler.config, prediction_type=spec.prediction_type
        )
    loaded = _pretrained_tensors(spec, parts)
    if getattr(parts.text_encoder, "pooler", None) is not None:
        parts.text_encoder.pooler = None
    return parts, loaded


def _pretrained_tensors(spec, parts: DiffusionComponents) -> dict[str, tuple[str, list[torch.Tensor]]]:
    """{component: (source, its tensors)} for the components `parts` loaded from a pretrained source.

    The tensors themselves, not their ids: a tensor dropped meanwhile (a BERT pooler) could otherwise
    hand its id to a new one (a fresh projection), which would then pass for pretrained."""
    base = f"{spec.pretrained_model_name_or_path}{f'@{spec.revision}' if spec.revision else ''}"
    candidates = (
        ("vae", parts.vae, spec.vae_config, f"{base} (vae)"),
        ("unet", parts.unet, spec.unet_config, f"{base} (unet)"),
        ("text_encoder", parts.text_encoder, spec.text_encoder_config,
         spec.text_encoder_name_or_path or f"{base} (text_encoder)"),
    )  # fmt: skip
    return {
        name: (source, [*module.parameters(), *module.buffers()])
        for name, module, config, source in candidates
        if config is None
    }


def read_pretrained_component(spec, name: str) -> list[torch.Tensor]:
    """The tensors of one component (`vae`, `unet`, `text_encoder`) of the `components` part `spec`, read
    again from its pretrained source in their stored dtype, in the order `load_diffusion_components`
    reports them (parameters, then buffers)."""
    base = resolve_source(spec.pretrained_model_name_or_path)
    key = "model.init_args.components.pretrained_model_name_or_path"
    common = {"revision": spec.revision}
    if name == "vae":
        module = _load(AutoencoderKL.from_pretrained, base, "VAE", key, subfolder="vae", **common)
    elif name == "unet":
        module = _load(UNet2DConditionModel.from_pretrained, base, "U-Net", key, subfolder="unet", **common)
    elif name == "text_encoder":
        module, _ = load_text_side(
            base, spec.revision, None, spec.text_encoder_name_or_path, spec.tokenizer_name_or_path,
            "model.init_args.components.",
        )  # fmt: skip
    else:
        raise ValueError(f"no pretrained component {name!r}; choose vae, unet or text_encoder")
    return [*module.parameters(), *module.buffers()]
