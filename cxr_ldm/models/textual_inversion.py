"""Textual inversion: new placeholder tokens whose embedding rows are the only text weights that train.

The new rows live in their own small `nn.Parameter`, spliced after the encoder's frozen token embedding
(`SplicedEmbedding`). Nothing else is in the optimizer, so AdamW (weight decay included) cannot touch the
pretrained rows; they stay bitwise unchanged. `merged()` gives one ordinary `nn.Embedding` for export.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from cxr_ldm.errors import ConfigError


@dataclass
class TextualInversionConfig:
    """Placeholder tokens to add and the words whose embeddings initialise them.

    A token's row starts as the mean embedding of its init word's tokens: its entry in `init_words`
    (token -> word, e.g. {"<pleural-effusion>": "pleural effusion"}), else `init_word`.
    """

    placeholder_tokens: list[str] = field(default_factory=lambda: ["<lung-xray>"])
    init_word: str = "lung"
    init_words: dict[str, str] | None = None


class AddedRows(nn.Module):
    """The new tokens' embedding rows: the whole `token_embeddings` component."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(rows.detach().clone())


class SplicedEmbedding(nn.Module):
    """Token ids below `base.num_embeddings` read the frozen base table; the rest read `added`."""

    def __init__(self, base: nn.Embedding, new_rows: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.added = AddedRows(new_rows)

    @property
    def new_rows(self) -> nn.Parameter:
        return self.added.weight

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings + self.new_rows.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    @property
    def weight(self) -> torch.Tensor:
        """The merged table (a new tensor): for code that reads `.weight` (dtype, shape)."""
        return torch.cat([self.base.weight, self.new_rows.to(self.base.weight.dtype)])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        size = self.base.num_embeddings
        is_new = input_ids >= size
        out = self.base(input_ids.clamp(max=size - 1))
        rows = self.new_rows.to(out.dtype)[(input_ids - size).clamp(min=0, max=self.new_rows.shape[0] - 1)]
        return torch.where(is_new.unsqueeze(-1), rows, out)  # no host sync: no `if is_new.any()`

    def merged(self) -> nn.Embedding:
        """One `nn.Embedding` holding the base rows then the new rows (for export)."""
        table = nn.Embedding(self.num_embeddings, self.embedding_dim)
        table.weight.data.copy_(self.weight.detach())
        return table.to(self.base.weight.device)


def add_placeholder_tokens(encoder: nn.Module, tokenizer, config: TextualInversionConfig):
    """Add the tokens to (a copy of) the tokenizer and splice their rows into `encoder`.

    Returns `(tokenizer, spliced_embedding)`. The tokenizer is copied first because the CLIP tokenizer is
    shared (cached) across models.
    """
    key = "model.init_args.conditioning.textual_inversion"
    tokens = list(config.placeholder_tokens)
    if not tokens:
        raise ConfigError(f"{key}.placeholder_tokens is empty")
    tokenizer = copy.deepcopy(tokenizer)
    base = encoder.get_input_embeddings()
    if not isinstance(base, nn.Embedding):
        raise ConfigError(f"{key}: the text encoder's input embedding is not an nn.Embedding")
    existing = [t for t in tokens if t in tokenizer.get_vocab()]
    if existing:
        raise ConfigError(f"{key}.placeholder_tokens {existing} are already in the tokenizer's vocabulary")
    init_words = dict(config.init_words or {})
    stray = sorted(set(init_words) - set(tokens))
    if stray:
        raise ConfigError(f"{key}.init_words names {stray}, which are not in placeholder_tokens {tokens}")
    init_ids = {}
    for token in tokens:
        word = init_words.get(token, config.init_word)
        init_ids[token] = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not init_ids[token]:
            where = f"init_words[{token!r}]" if token in init_words else "init_word"
            raise ConfigError(f"{key}.{where} {word!r} gives no tokens")
    added = tokenizer.add_tokens(tokens)
    if added != len(tokens):
        raise ConfigError(f"{key}.placeholder_tokens: only {added} of {tokens} could be added")
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if ids != list(range(base.num_embeddings, base.num_embeddings + len(tokens))):
        raise ConfigError(
            f"{key}: the tokenizer's new ids {ids} do not follow the encoder's {base.num_embeddings} rows"
        )
    with torch.no_grad():
        init = torch.stack([base.weight[init_ids[token]].float().mean(0) for token in tokens])
    spliced = SplicedEmbedding(base, init.to(base.weight.dtype))
    encoder.set_input_embeddings(spliced)
    return tokenizer, spliced


def merged_encoder(encoder: nn.Module) -> nn.Module:
    """A copy of `encoder` with any spliced embedding merged into a plain one (vocab_size updated)."""
    embedding = encoder.get_input_embeddings()
    if not isinstance(embedding, SplicedEmbedding):
        return encoder
    merged = copy.deepcopy(encoder)
    table = embedding.merged()
    merged.set_input_embeddings(table)
    merged.config.vocab_size = table.num_embeddings
    return merged
