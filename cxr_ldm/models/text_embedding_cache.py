"""A text-embedding cache for a frozen text side: what the frozen text parts give for every prompt, computed once.

Two levels, by what trains:
- `context`: no text part trains (encoder, projection, token embeddings and text LoRA all frozen). The
  context a prompt gives the U-Net never changes: the conditioner's output is cached.
- `encoder`: only the projection trains on a frozen encoder (a domain encoder projected into the U-Net's
  width, `domain-frozen-unet`, `textual-projection`). The encoder's states are cached and every step
  projects them with the projection as it is then: the encoder's forward pass (a 22M-weight BERT for the
  phantom stand-in, RadBERT's 110M at real scale) runs once per prompt instead of every step.

Either is computed once per distinct prompt of the training and validation sets, plus the empty prompt that
condition dropout substitutes. The cache folder's name hashes what made it: the weights of what is cached
(the encoder and projection for `context`, the encoder alone for `encoder`), the tokenizer, the token
length, the dtype the encoder ran in and the prompts; a change of any of them builds a new cache.
`embeddings.npy` is moved into place last, so a reader that finds it can trust the cache is complete (a
half-written cache is never used).

Files: `prompts.json` (row order), `meta.json` (shape, dtype, level), `attention_mask.npy` (rows, tokens)
and `embeddings.npy` (rows, tokens, width; bfloat16 is stored as its uint16 bit pattern).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxr_ldm.data.atomic import atomic_path, options_key, write_text_atomic
from cxr_ldm.models.frozen_dtype import training_dtype

log = logging.getLogger("cxr_ldm.models")

EMBEDDINGS_FILE = "embeddings.npy"
MASK_FILE = "attention_mask.npy"
PROMPTS_FILE = "prompts.json"
META_FILE = "meta.json"
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16}
CONTEXT, ENCODER = "context", "encoder"


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    blob = json.dumps([type(tokenizer).__name__, sorted(vocab.items())], ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def text_cache_key(
    conditioner: nn.Module, prompts: Sequence[str], dtype: torch.dtype | None, level: str = CONTEXT
) -> str:
    """Hash of everything that shapes the cached values (at `level`: `context` or `encoder`)."""
    options = {
        "weights": weights_fingerprint(conditioner if level == CONTEXT else conditioner.encoder),
        "tokenizer": tokenizer_fingerprint(conditioner.tokenizer),
        "max_length": conditioner.max_length,
        "attention_mask": conditioner.use_attention_mask,
        "autocast": str(dtype),
        "prompts": hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest(),
        "version": 1,
    }
    if level != CONTEXT:  # a context cache keeps the key it had before there were levels
        options["level"] = level
    return options_key(options)


def cache_level(conditioner: nn.Module, trained_text_parts: Collection[str]) -> str | None:
    """`context` when no text part trains, `encoder` when only the projection of a frozen encoder trains,
    None (no cache) otherwise."""
    trained = set(trained_text_parts)
    if not trained:
        return CONTEXT
    if trained == {"text_projection"} and conditioner.projection is not None:
        return ENCODER
    return None


def text_cache_ready(folder: str | os.PathLike) -> bool:
    return all(
        (Path(folder) / name).is_file() for name in (PROMPTS_FILE, META_FILE, MASK_FILE, EMBEDDINGS_FILE)
    )


def cache_prompts(prompts: Sequence[str]) -> list[str]:
    """The distinct prompts, sorted, with the empty prompt (condition dropout) always present."""
    return sorted({"", *prompts})


@torch.no_grad()
def build_text_cache(
    conditioner: nn.Module,
    prompts: Sequence[str],
    folder: str | os.PathLike,
    autocast: AbstractContextManager | None = None,
    batch_size: int = 64,
    level: str = CONTEXT,
) -> None:
    """Encode every prompt (as given: call `cache_prompts` first) with `conditioner` into `folder`: its
    output (`level` `context`) or its encoder's states before the projection (`encoder`)."""
    folder = Path(folder)
    encode = conditioner.encode_tokens if level == CONTEXT else conditioner.encoder_states
    prompts = list(prompts)
    embeddings = None
    masks = np.zeros((len(prompts), conditioner.max_length), dtype=np.uint8)
    write_text_atomic(folder / PROMPTS_FILE, json.dumps(prompts))
    with atomic_path(folder / EMBEDDINGS_FILE) as tmp:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            tokens = conditioner.tokenize(chunk)
            with autocast or nullcontext():
                device = next(conditioner.encoder.parameters()).device
                mask = tokens.get("attention_mask")
                hidden = encode(tokens["input_ids"].to(device), None if mask is None else mask.to(device))
            if embeddings is None:
                dtype = hidden.dtype
                shape = (len(prompts), *hidden.shape[1:])
                embeddings = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=_NUMPY_DTYPES[dtype], shape=shape
                )
            values = hidden.detach().cpu()
            if values.dtype == torch.bfloat16:
                values = values.view(torch.int16)
            embeddings[start : start + len(chunk)] = values.numpy().view(embeddings.dtype)
            if mask is not None:
                masks[start : start + len(chunk)] = mask.numpy().astype(np.uint8)
            else:
                masks[start : start + len(chunk)] = 1
        if embeddings is None:
            raise ValueError(f"no prompts to encode for the text-embedding cache in {folder}")
        embeddings.flush()
        del embeddings
        meta = {"dtype": str(dtype).removeprefix("torch."), "shape": list(shape), "level": level}
        write_text_atomic(folder / META_FILE, json.dumps(meta))
        with atomic_path(folder / MASK_FILE) as mask_tmp, open(mask_tmp, "wb") as handle:
            np.save(handle, masks)


class TextEmbeddingCache:
    """Read side: the cached values of a batch of prompts by row lookup (memory-mapped); `level` says what
    they are (`context`: the U-Net's context; `encoder`: the encoder's states, to be projected)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        prompts = json.loads((self.folder / PROMPTS_FILE).read_text())
        self.rows = {prompt: row for row, prompt in enumerate(prompts)}
        meta = json.loads((self.folder / META_FILE).read_text())
        self.dtype = getattr(torch, meta["dtype"])
        self.level = meta.get("level", CONTEXT)
        self._embeddings = np.load(self.folder / EMBEDDINGS_FILE, mmap_mode="r")
        self._masks = np.load(self.folder / MASK_FILE)

    def __contains__(self, prompt: str) -> bool:
        return prompt in self.rows

    def covers(self, prompts: Sequence[str]) -> bool:
        return all(prompt in self.rows for prompt in prompts)

    def lookup(
        self, prompts: Sequence[str], dropped: Sequence[bool] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(values (B, T, D), attention mask (B, T)) on the CPU; dropped rows get the empty prompt's."""
        dropped = dropped if dropped is not None else [False] * len(prompts)
        rows = [self.rows["" if drop else prompt] for prompt, drop in zip(prompts, dropped, strict=True)]
        values = torch.from_numpy(np.ascontiguousarray(self._embeddings[np.asarray(rows)]))
        if self.dtype == torch.bfloat16:
            values = values.view(torch.bfloat16)
        masks = torch.from_numpy(self._masks[np.asarray(rows)].astype(np.int64))
        return values, masks


def open_text_cache(
    text: nn.Module, trainer, trained_text_parts: Collection[str]
) -> TextEmbeddingCache | None:
    """The cache of the fit `trainer` runs, built (rank zero) when missing, at the level that what trains
    allows (`cache_level`); None when a text part other than the projection trains or the data module
    cannot list its prompts (`all_prompts()`)."""
    level = cache_level(text, trained_text_parts)
    if level is None:
        log.warning(
            "conditioning.text_embedding_cache is on but %s trains; encoding prompts every step",
            " and ".join(sorted(trained_text_parts)),
        )
        return None
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None or not hasattr(datamodule, "all_prompts"):
        log.warning("text_embedding_cache: the data module has no all_prompts(); encoding every step")
        return None
    prompts = cache_prompts(datamodule.all_prompts())
    autocast_dtype = training_dtype(trainer.precision)
    root = Path(getattr(datamodule, "cache_dir", None) or Path(trainer.default_root_dir) / "cache")
    folder = root / f"text-embeddings-{text_cache_key(text, prompts, autocast_dtype, level)}"
    if trainer.local_rank == 0 and not text_cache_ready(folder):
        log.info("encoding %d prompts into the text-embedding cache %s (%s)", len(prompts), folder, level)
        was_training = text.training
        text.eval()
        build_text_cache(text, prompts, folder, trainer.precision_plugin.forward_context(), level=level)
        text.train(was_training)  # a trained projection goes back to training mode
    trainer.strategy.barrier("text_embedding_cache")
    return TextEmbeddingCache(folder)
