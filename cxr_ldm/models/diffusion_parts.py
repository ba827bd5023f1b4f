"""The typed parts a `LatentDiffusion` is built from, one small dataclass per concern.

A config sets them as nested mappings under `model.init_args` (`components:`, `objective:`, `conditioning:`,
`ema:`, `optimization:`, `speed:`), or one field at a time with a dotted key
(`model.init_args.objective.snr_gamma: 5.0`); what trains is `trainable` (`Trainable` per component) and
`lora` (`LoraSpec` per component) beside them. Every part has defaults, so a config names only what differs.

Checkpoints written before the parts existed keep their flat hyperparameters (`snr_gamma`, `ema_decay`, ...);
`upgrade_flat_arguments` moves them into their part when such a checkpoint is loaded.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from cxr_ldm.errors import ConfigError
from cxr_ldm.models.textual_inversion import TextualInversionConfig
from cxr_ldm.pretrained import absolute_if_local

TextProjectionChoice = Literal["linear", "mlp", "rebuild_cross_attention"]


@dataclass(frozen=True)
class Components:
    """Where the networks come from.

    Args:
        pretrained_model_name_or_path: diffusers pipeline (hub id or local directory) that supplies every
            component not given an explicit config.
        revision: hub revision of the pipeline.
        vae_config: `AutoencoderKL` config; builds a fresh VAE instead of loading one.
        unet_config: `UNet2DConditionModel` config; builds a fresh U-Net.
        text_encoder_config: `CLIPTextConfig` fields; builds a fresh CLIP text encoder.
        text_encoder_name_or_path: any Hugging Face encoder (hub id or directory) replacing CLIP.
        tokenizer_name_or_path: tokenizer directory or hub id; `clip` builds CLIP's tokenizer offline.
        scheduler_config: `DDPMScheduler` config for the training noise schedule.
        prediction_type: override the schedule's target (`epsilon` or `v_prediction`).
    """

    pretrained_model_name_or_path: str | None = None
    revision: str | None = None
    vae_config: dict | None = None
    unet_config: dict | None = None
    text_encoder_config: dict | None = None
    text_encoder_name_or_path: str | None = None
    tokenizer_name_or_path: str | None = None
    scheduler_config: dict | None = None
    prediction_type: Literal["epsilon", "v_prediction"] | None = None


@dataclass(frozen=True)
class Objective:
    """What the training loss is, and what a non-finite loss does.

    Args:
        snr_gamma: Min-SNR-gamma loss weighting (5.0 is common); None for plain MSE.
        noise_offset: offset-noise strength (0.05-0.1 helps very dark / bright images).
        condition_dropout: probability of training on the empty prompt, for classifier-free guidance.
        nonfinite_loss: `raise` stops the run at a non-finite loss (checked on the host only at logging
            steps and before a checkpoint is written, so the step never waits for the device); `skip`
            skips that step (checked every step). Under DDP the ranks decide together: all skip or all
            raise at the same step; `skip` with `trainer.accumulate_grad_batches` > 1 is refused there.
        nonfinite_max_skips: with `skip`, the run stops with an error once more steps than this were
            skipped (a diverged run does not skip its way to the end).
    """

    snr_gamma: float | None = None
    noise_offset: float = 0.0
    condition_dropout: float = 0.1
    nonfinite_loss: Literal["raise", "skip"] = "raise"
    nonfinite_max_skips: int = 10

    def __post_init__(self) -> None:
        if self.nonfinite_max_skips < 0:
            raise ConfigError("model.init_args.objective.nonfinite_max_skips must be >= 0")
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ConfigError("model.init_args.objective.condition_dropout must be in [0, 1)")
        if self.snr_gamma is not None and not 0.0 < self.snr_gamma < float("inf"):
            raise ConfigError(
                f"model.init_args.objective.snr_gamma must be a finite number > 0 (5.0 is common) or null "
                f"(plain MSE), got {self.snr_gamma!r}"
            )


@dataclass(frozen=True)
class Conditioning:
    """How the report text reaches the U-Net.

    Args:
        max_prompt_tokens: token limit of the text encoder (default: the tokenizer's own, 77 for CLIP).
        text_projection: how a text encoder meets the U-Net: `linear` or `mlp` (a learned per-token
            projection to `cross_attention_dim`), or `rebuild_cross_attention` (fresh `attn2.to_k/to_v`
            layers of the encoder's width; the U-Net must train). Required when the widths differ.
        text_projection_hidden: hidden width of the `mlp` projection (default: the larger width).
        text_projection_weights: folder written by `TextProjectionPretrainer`; initialises the projection.
        textual_inversion: placeholder tokens added to the tokenizer, trained as `token_embeddings`.
        text_embedding_cache: when no text part trains, encode every distinct training and validation
            prompt once at fit start into a cache folder (beside the data module's `cache_dir`, else under
            the run's root dir) and read the U-Net's context from it; when only the projection of a frozen
            encoder trains, cache the encoder's states and project them every step. Disk: prompts x tokens
            x width values (about 11 GB for 100,000 report prompts with CLIP at bf16).
    """

    max_prompt_tokens: int | None = None
    text_projection: TextProjectionChoice | None = None
    text_projection_hidden: int | None = None
    text_projection_weights: str | None = None
    textual_inversion: TextualInversionConfig | None = None
    text_embedding_cache: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.textual_inversion, dict):  # from a checkpoint's hyperparameters
            object.__setattr__(self, "textual_inversion", TextualInversionConfig(**self.textual_inversion))


@dataclass(frozen=True)
class Ema:
    """An exponential moving average of the trained weights; validation, sampling and export may use it.

    Args:
        decay: the EMA's decay per optimizer step (0.9999 at real scale); null (or 0) keeps no EMA.
    """

    decay: float | None = None

    def __post_init__(self) -> None:
        if self.decay is not None and not 0.0 <= self.decay < 1.0:
            raise ConfigError(f"model.init_args.ema.decay must be in [0, 1) or null, got {self.decay!r}")


@dataclass(frozen=True)
class Optimization:
    """The optimizer and learning-rate schedule (each trained component's lr is in `trainable`).

    Args:
        lr_scheduler: diffusers scheduler name (`constant`, `cosine`, `linear`, ...).
        lr_warmup_steps: warm-up steps of the learning rate.
        fused_adamw: use PyTorch's fused AdamW kernel when every trained parameter is on a CUDA device
            (the same update, fewer kernel launches); ignored on CPU.
    """

    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    fused_adamw: bool = True


@dataclass(frozen=True)
class Speed:
    """Options that change speed and memory, never the result.

    Args:
        gradient_checkpointing: trade compute for memory in the U-Net whenever anything trains (gradients
            pass through it even when it is frozen) and in the text encoder when it, its LoRA or new token
            rows train.
        channels_last: store the U-Net in channels-last memory format (faster convolutions on Tensor
            Cores); None turns it on when training on CUDA and off elsewhere.
        compile_unet: `torch.compile` the U-Net's forward at fit start (first steps are slow while it
            compiles); weights, checkpoints, EMA and export are unchanged.
        frozen_in_training_dtype: under `bf16-mixed` / `16-mixed`, store the frozen weights (VAE, frozen
            text encoder, the frozen U-Net under LoRA) in that dtype for the fit instead of re-casting them
            on every forward; checkpoints keep their float32 values and they come back when the fit ends
            (read again from their pretrained source: no rank keeps a float32 host copy during the fit).
    """

    gradient_checkpointing: bool = False
    channels_last: bool | None = None
    compile_unet: bool = False
    frozen_in_training_dtype: bool = True


PARTS: dict[str, type] = {
    "components": Components,
    "objective": Objective,
    "conditioning": Conditioning,
    "ema": Ema,
    "optimization": Optimization,
    "speed": Speed,
}

# Flat argument of checkpoints written before the parts existed -> (part, field).
FLAT_ARGUMENTS: dict[str, tuple[str, str]] = {
    **{
        name: (part, name)
        for part, cls in PARTS.items()
        if part != "ema"
        for name in cls.__dataclass_fields__
    },
    "ema_decay": ("ema", "decay"),
}


def new_key(flat: str) -> str:
    """The config key that replaced flat argument `flat`."""
    part, name = FLAT_ARGUMENTS[flat]
    return f"model.init_args.{part}.{name}"


def upgrade_flat_arguments(parts: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """`parts` (part name -> dataclass or mapping) with the flat arguments in `flat` moved into their part.

    A name that is neither raises TypeError, as a misspelt keyword would."""
    unknown = sorted(set(flat) - set(FLAT_ARGUMENTS))
    if unknown:
        raise TypeError(f"LatentDiffusion got unexpected keyword argument(s) {unknown}")
    if not flat:
        return parts
    warnings.warn(
        "LatentDiffusion arguments from before its typed parts ("
        + ", ".join(f"{name} -> {new_key(name)}" for name in sorted(flat))
        + "); moved into their parts. A checkpoint keeps loading this way; configs and code should use "
        "the new keys.",
        FutureWarning,
        stacklevel=3,
    )
    upgraded = dict(parts)
    for name, value in flat.items():
        part, field_name = FLAT_ARGUMENTS[name]
        current = upgraded[part]
        fields = dataclasses.asdict(current) if dataclasses.is_dataclass(current) else dict(current or {})
        fields[field_name] = value
        upgraded[part] = fields
    return upgraded


# Fields that may name a local folder: a relative one is kept absolute (`absolute_if_local`), so the
# checkpoint's hyperparameters load the model from any working directory (export, generate, evaluate).
FOLDER_FIELDS = ("pretrained_model_name_or_path", "text_encoder_name_or_path", "tokenizer_name_or_path",
                 "text_projection_weights")  # fmt: skip


def as_part(cls: type, value: Any, key: str):
    """`value` (a `cls`, a mapping from a config or checkpoint, or None for the defaults) as a `cls`, its local
    folders (`FOLDER_FIELDS`) absolute."""
    if value is None:
        part = cls()
    elif isinstance(value, cls):
        part = value
    elif isinstance(value, dict):
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"{key} has unknown field(s) {unknown}; choose from {list(cls.__dataclass_fields__)}"
            )
        part = cls(**value)
    else:
        raise ConfigError(f"{key} must be a mapping of {list(cls.__dataclass_fields__)}, got {value!r}")
    folders = {name: absolute_if_local(getattr(part, name)) for name in FOLDER_FIELDS if hasattr(part, name)}
    return dataclasses.replace(part, **folders) if folders else part
