"""Prompts longer than the text encoder's limit: counted and reported once, never cut silently.

The text encoder reads at most `max_length` tokens (77 for CLIP, special tokens included); the tokenizer
cuts the rest. A run reports how many of its prompts lose words that way, once, as a warning.
"""

from __future__ import annotations

import logging

LOGGER = logging.getLogger("cxr_ldm")


def count_overlong(tokenizer, prompts: list[str], max_length: int) -> tuple[int, int]:
    """How many distinct prompts have more than `max_length` tokens, and the longest token count."""
    unique = sorted(set(prompts))
    over, longest = 0, 0
    for start in range(0, len(unique), 2048):
        encoded = tokenizer(unique[start : start + 2048], truncation=False, verbose=False)["input_ids"]
        for ids in encoded:
            longest = max(longest, len(ids))
            over += len(ids) > max_length
    return over, longest


def warn_overlong(tokenizer, prompts: list[str], max_length: int, where: str) -> int:
    """Log one warning when some of `prompts` are longer than the encoder reads; returns how many are."""
    if tokenizer is None or not prompts:
        return 0
    over, longest = count_overlong(tokenizer, prompts, max_length)
    if over:
        LOGGER.warning(
            "%d of %d distinct prompts in %s are longer than the text encoder's %d tokens (longest %d) and "
            "are cut to their first %d tokens; shorten them (data.init_args.max_tokens drops them from training)",
            over, len(set(prompts)), where, max_length, longest, max_length,
        )  # fmt: skip
    return over


def text_limits(model) -> tuple[object, int] | tuple[None, None]:
    """(tokenizer, max tokens) of a LatentDiffusion or a diffusers pipeline; (None, None) when unknown."""
    text = getattr(model, "text", None)
    if text is not None and getattr(text, "tokenizer", None) is not None:
        return text.tokenizer, int(text.max_length)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        return tokenizer, int(min(getattr(tokenizer, "model_max_length", 77), 512))
    return None, None
