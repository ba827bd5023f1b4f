"""The text encoder's padding masks in the U-Net's cross-attention while a diffusers pipeline samples.

diffusers' pipeline has no `encoder_attention_mask` argument, so a U-Net forward pre-hook adds it: the
pipeline's guided batch is (negative, prompt) concatenated, an unguided one the prompts alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from cxr_ldm.models.text_conditioner import TextConditioner


@contextmanager
def cross_attention_masks(
    text: TextConditioner, unet: nn.Module, prompts: list[str], negative_prompt: str
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Prompt and negative embeddings; inside the block the U-Net also gets their padding masks."""
    context, mask = text.encode(list(prompts))
    uncond, uncond_mask = text.encode([negative_prompt] * len(prompts))
    if mask is None:
        yield context, uncond
        return
    handle = unet.register_forward_pre_hook(
        partial(_add_encoder_attention_mask, torch.cat([uncond_mask, mask]), mask), with_kwargs=True
    )
    try:
        yield context, uncond
    finally:
        handle.remove()


def _add_encoder_attention_mask(guided: torch.Tensor, plain: torch.Tensor, module, args, kwargs):
    """U-Net forward pre-hook: the padding mask matching this call's batch (see `cross_attention_masks`)."""
    sample = args[0] if args else kwargs["sample"]
    if kwargs.get("encoder_attention_mask") is None:
        kwargs["encoder_attention_mask"] = guided if sample.shape[0] == guided.shape[0] else plain
    return args, kwargs
