"""Prompt tokenization in the DataLoader workers: batches carry `input_ids` (+ `attention_mask`).

The model hands its tokenizer to the data module before the loaders are built (`set_prompt_tokenizer`),
so the training step does not tokenize on the main process. Batches without `input_ids` still work:
the model then tokenizes the `prompt` strings itself, with the same settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import default_collate


class PromptTokenizer:
    """Fixed-length tokenization, identical to `TextConditioner.tokenize`; picklable into workers."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def __call__(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        )
        out = {"input_ids": tokens["input_ids"]}
        if "attention_mask" in tokens:
            out["attention_mask"] = tokens["attention_mask"]
        return out


class TokenizingCollate:
    """`default_collate`, plus the prompts' tokens when a tokenizer was handed over."""

    def __init__(self, tokenize: Callable[[Sequence[str]], dict[str, torch.Tensor]] | None = None) -> None:
        self.tokenize = tokenize

    def __call__(self, items: list[dict]) -> dict:
        batch = default_collate(items)
        if self.tokenize is not None and "prompt" in batch:
            batch.update(self.tokenize(batch["prompt"]))
        return batch


class PromptTokenizing:
    """Data module mix-in: accept the model's tokenizer and collate with it."""

    _prompt_tokenizer: Callable[[Sequence[str]], dict[str, torch.Tensor]] | None = None

    def set_prompt_tokenizer(
        self, tokenize: Callable[[Sequence[str]], dict[str, torch.Tensor]] | None
    ) -> None:
        """Called by the model in `setup()`, before any DataLoader is built; None turns it off."""
        self._prompt_tokenizer = tokenize

    def collate_fn(self) -> TokenizingCollate:
        return TokenizingCollate(self._prompt_tokenizer)
