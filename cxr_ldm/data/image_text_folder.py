"""Any folder of images with a `metadata.csv` of (file_name, prompt) rows, as a training set.

Useful for data that is not MIMIC-CXR: a hospital export, or a set this project generated.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from lightning import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, Dataset, random_split

from cxr_ldm.data.prompt_tokens import PromptTokenizing
from cxr_ldm.errors import ConfigError


class ImageTextFolder(Dataset):
    """Items follow the project's batch contract: `pixel_values` in [-1, 1] and `prompt`."""

    def __init__(self, root: str | Path, image_size: int, channels: int = 3) -> None:
        self.root = Path(root)
        metadata = self.root / "metadata.csv"
        if not metadata.is_file():
            raise ConfigError(f"{metadata} is missing: write a CSV with columns file_name,prompt")
        from cxr_ldm.data.table_files import check_complete

        check_complete(metadata, require_final_newline=False)
        with metadata.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or not {"file_name", "prompt"} <= set(rows[0]):
            raise ConfigError(f"{metadata} needs the columns file_name and prompt (and at least one row)")
        self.rows = rows
        self.image_size = image_size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        path = self.root / row["file_name"]
        try:
            with Image.open(path) as image:
                image = image.convert("L").resize((self.image_size, self.image_size), Image.BICUBIC)
        except OSError as error:
            raise ConfigError(
                f"cannot read image {path}: {error}; fix or remove its metadata.csv row"
            ) from error
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)[None]
        return {"pixel_values": pixels.expand(self.channels, -1, -1).contiguous(), "prompt": row["prompt"]}


class ImageTextFolderDataModule(PromptTokenizing, LightningDataModule):
    """Split one image/prompt folder into train and validation sets, seeded.

    Once a model hands over its tokenizer (`set_prompt_tokenizer`), batches also carry the prompts'
    `input_ids` (+ `attention_mask`), tokenized in the DataLoader workers.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 512,
        channels: int = 3,
        val_fraction: float = 0.1,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        dataset = ImageTextFolder(self.hparams.root, self.hparams.image_size, self.hparams.channels)
        n_val = max(1, round(len(dataset) * self.hparams.val_fraction))
        generator = torch.Generator().manual_seed(self.hparams.seed)
        self.train_set, self.val_set = random_split(dataset, [len(dataset) - n_val, n_val], generator)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            drop_last=shuffle and len(dataset) >= self.hparams.batch_size,
            collate_fn=self.collate_fn(),
        )

    def all_prompts(self) -> list[str]:
        """Every distinct prompt of the folder (for a text-embedding cache)."""
        if not hasattr(self, "train_set"):
            raise RuntimeError("call setup() before asking for the prompts")
        return sorted({row["prompt"] for row in self.train_set.dataset.rows})

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
