"""A per-token projection from a text encoder's width to the U-Net's `cross_attention_dim`.

Stored as a folder (`config.json` + `model.safetensors`) that plain PyTorch can rebuild: an
`nn.Sequential` of `Linear` (kind `linear`) or `Linear, GELU, Linear` (kind `mlp`, one hidden layer).
The same folder is written by the projection pre-training step and by export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cxr_ldm.errors import ConfigError
from cxr_ldm.models.cross_attention import rebuild_cross_attention

ProjectionKind = Literal["linear", "mlp"]
PROJECTION_KINDS: tuple[str, ...] = ("linear", "mlp")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class TextProjection(nn.Sequential):
    """`Linear` or `Linear -> GELU -> Linear`, applied to every token's hidden state."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kind: ProjectionKind = "mlp",
        hidden_features: int | None = None,
    ) -> None:
        if kind not in PROJECTION_KINDS:
            raise ConfigError(f"text projection kind must be one of {list(PROJECTION_KINDS)}, got {kind!r}")
        if kind == "linear":
            super().__init__(nn.Linear(in_features, out_features))
            hidden_features = None
        else:
            hidden_features = int(hidden_features or max(in_features, out_features))
            super().__init__(
                nn.Linear(in_features, hidden_features), nn.GELU(), nn.Linear(hidden_features, out_features)
            )
        self.kind = kind
        self.in_features = in_features
        self.out_features = out_features
        self.hidden_features = hidden_features

    def config(self) -> dict:
        return {
            "kind": self.kind,
            "in_features": self.in_features,
            "hidden_features": self.hidden_features,
            "out_features": self.out_features,
            "activation": "gelu" if self.kind == "mlp" else None,
            "layout": "torch.nn.Sequential: [Linear] or [Linear, GELU, Linear], applied per token",
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write `config.json` and `model.safetensors` (float32) into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2) + "\n")
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, out / WEIGHTS_FILE)
        return out


def read_projection_config(path: str | Path, key: str) -> dict:
    folder = Path(path).expanduser()
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ConfigError(
            f"{key}: '{path}' is not a text projection folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}; "
            "write one with the cxr_ldm.models.TextProjectionPretrainer config)"
        )
    return json.loads((folder / CONFIG_FILE).read_text())


def load_projection(
    path: str | Path, key: str = "model.init_args.conditioning.text_projection_weights"
) -> TextProjection:
    """Rebuild a saved projection; `key` names the config entry in error messages."""
    config = read_projection_config(path, key)
    projection = TextProjection(
        config["in_features"], config["out_features"], config["kind"], config.get("hidden_features")
    )
    state = load_file(Path(path).expanduser() / WEIGHTS_FILE)
    projection.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return projection


def build_projection(
    conditioning, text_encoder: nn.Module, unet: nn.Module, unet_trains: bool
) -> nn.Module | None:
    """The configured bridge between text encoder width and U-Net `cross_attention_dim`, from the
    `conditioning` part (`cxr_ldm.models.diffusion_parts.Conditioning`); None when none is needed or the
    U-Net's cross-attention was rebuilt for the encoder's width instead."""
    spec = conditioning
    width = getattr(text_encoder.config, "hidden_size", None)
    target = unet.config.cross_attention_dim
    choice = spec.text_projection
    key = "model.init_args.conditioning.text_projection"
    weights_key = "model.init_args.conditioning.text_projection_weights"
    if spec.text_projection_weights is not None:
        if choice == "rebuild_cross_attention":
            raise ConfigError(f"{key}: rebuild_cross_attention takes no text_projection_weights")
        projection = load_projection(spec.text_projection_weights, weights_key)
        if choice is not None and projection.kind != choice:
            raise ConfigError(f"{key} is {choice!r} but {weights_key} holds a {projection.kind!r} projection")
        if (projection.in_features, projection.out_features) != (width, target):
            raise ConfigError(
                f"{weights_key} maps {projection.in_features} -> "
                f"{projection.out_features}, but this text encoder is {width} wide and the U-Net's "
                f"cross_attention_dim is {target}"
            )
        return projection
    if choice in ("linear", "mlp"):
        if width is None:
            raise ConfigError(f"{key}: the text encoder's config has no hidden_size")
        return TextProjection(width, target, choice, spec.text_projection_hidden)
    if choice == "rebuild_cross_attention":
        if not unet_trains:
            raise ConfigError(
                f"{key}: rebuild_cross_attention makes fresh attn2.to_k/to_v layers, so the U-Net must "
                "train (add unet to model.init_args.trainable)"
            )
        rebuild_cross_attention(unet, width)
        return None
    if width is None or width == target:
        return None
    raise ConfigError(
        f"the text encoder's width ({width}) differs from the U-Net's cross_attention_dim ({target}): "
        f"set {key} to linear, mlp or rebuild_cross_attention"
    )
