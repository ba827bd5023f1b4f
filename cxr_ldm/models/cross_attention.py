"""Rebuild a U-Net's cross-attention key/value layers for a text encoder of another width.

The new `attn2.to_k` / `attn2.to_v` layers are freshly initialised: the pretrained binding between the
text embedding space and the image features (what the U-Net learned to attend to in the prompt) is
discarded and must be learned again by training the U-Net. Queries, outputs and every other weight stay.
"""

from __future__ import annotations

from diffusers import UNet2DConditionModel
from torch import nn


def cross_attention_layers(unet: UNet2DConditionModel) -> list[tuple[str, nn.Module]]:
    """The (name, Attention) pairs of every cross-attention block (`...attn2`)."""
    return [(name, module) for name, module in unet.named_modules() if name.endswith("attn2")]


def rebuild_cross_attention(unet: UNet2DConditionModel, width: int) -> list[str]:
    """Replace every `attn2.to_k`/`attn2.to_v` with a fresh `Linear(width, ...)`; return their names.

    The U-Net's config records the new `cross_attention_dim`, so `save_pretrained` writes a U-Net that
    plain diffusers loads with the right shapes.
    """
    rebuilt = []
    for name, attention in cross_attention_layers(unet):
        for part in ("to_k", "to_v"):
            old: nn.Linear = getattr(attention, part)
            new = nn.Linear(width, old.out_features, bias=old.bias is not None)
            new.to(device=old.weight.device, dtype=old.weight.dtype)
            setattr(attention, part, new)
            rebuilt.append(f"{name}.{part}")
        attention.cross_attention_dim = width
    unet.register_to_config(cross_attention_dim=width)
    return rebuilt
