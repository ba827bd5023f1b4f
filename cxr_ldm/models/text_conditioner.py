"""Prompt text to the U-Net's cross-attention context: tokenizer, encoder and an optional projection."""

from __future__ import annotations

import torch
from torch import nn


class TextConditioner(nn.Module):
    """Encode prompts into a (batch, tokens, width) context for the U-Net.

    CLIP encoders are used as Stable Diffusion uses them (last hidden state, fixed 77-token padding, no
    attention mask). Other encoders (BERT family) get their attention mask, which `encode` also returns
    for the U-Net's cross-attention (`encoder_attention_mask`), so padding is attended to nowhere; a
    `projection` maps their width to the U-Net's `cross_attention_dim` when the two differ.
    """

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer,
        projection: nn.Module | None = None,
        max_length: int | None = None,
        use_attention_mask: bool | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.projection = projection
        self.max_length = int(max_length or min(getattr(tokenizer, "model_max_length", 77), 512))
        model_type = getattr(getattr(encoder, "config", None), "model_type", "")
        self.use_attention_mask = (
            use_attention_mask if use_attention_mask is not None else not model_type.startswith("clip")
        )

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        )

    def encode_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.project(self.encoder_states(input_ids, attention_mask))

    def encoder_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The encoder's last hidden states, before the projection."""
        mask = attention_mask if self.use_attention_mask else None
        return self.encoder(input_ids=input_ids, attention_mask=mask)[0]

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """The encoder's states into the U-Net's width (unchanged without a projection)."""
        return hidden if self.projection is None else self.projection(hidden)

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(context, mask): the mask (1 for tokens, 0 for padding) is None for CLIP, which attends to all."""
        tokens = self.tokenize(prompts)
        device = next(self.encoder.parameters()).device
        mask = tokens.get("attention_mask")
        # non_blocking: a blocking host-to-device copy would wait for all queued GPU work every step
        mask = None if mask is None else mask.to(device, non_blocking=True)
        hidden = self.encode_tokens(tokens["input_ids"].to(device, non_blocking=True), mask)
        return hidden, mask if self.use_attention_mask else None

    def forward(self, prompts: list[str]) -> torch.Tensor:
        return self.encode(prompts)[0]
