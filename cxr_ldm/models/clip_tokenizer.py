"""CLIP ViT-L/14's tokenizer, loaded from the `vocab.json` and `merges.txt` shipped with the package."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer

CLIP_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "assets" / "clip_tokenizer"


@lru_cache(maxsize=1)
def clip_tokenizer() -> CLIPTokenizer:
    """CLIP ViT-L/14's tokenizer (77 tokens, `<|endoftext|>` padding), read from package data."""
    return CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
