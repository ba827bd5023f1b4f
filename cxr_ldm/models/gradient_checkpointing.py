"""Gradient checkpointing (`speed.gradient_checkpointing`): recompute activations in the backward pass instead
of keeping them, in the large components gradients pass through, trained or not."""

from __future__ import annotations

from torch import nn


def enable_checkpointing(module: nn.Module) -> None:
    """Turn on a diffusers or transformers model's own gradient checkpointing."""
    if hasattr(module, "enable_gradient_checkpointing"):
        module.enable_gradient_checkpointing()
    elif hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5 (non-reentrant)
        module.activation_checkpointing_enable()
    elif hasattr(module, "gradient_checkpointing_enable"):
        # non-reentrant: also correct when the module's own inputs need no gradient (frozen embeddings)
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def checkpoint_gradient_path(unet: nn.Module, text_encoder: nn.Module, trainable: set[str] | dict) -> None:
    """Checkpoint the U-Net whenever anything trains (e.g. a frozen U-Net under LoRA, text projection or
    textual inversion) and the text encoder when it, its LoRA or new token rows train."""
    path = [unet] if trainable else []
    if any(name in trainable for name in ("text_encoder", "text_encoder_lora", "token_embeddings")):
        path.append(text_encoder)
    for module in path:
        enable_checkpointing(module)
    if "text_encoder" not in trainable and text_encoder in path:
        # transformers checkpoints a layer only in train mode; a frozen encoder stays in eval mode, so
        # only its checkpointed layers' own flag is set (their dropout-bearing children stay in eval).
        for layer in text_encoder.modules():
            if getattr(layer, "gradient_checkpointing", False) is True:
                layer.training = True
