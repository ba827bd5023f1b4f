"""The torch Dataset over an index: one image, its prompt and its labels per item."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cxr_ldm.data.bad_samples import (
    BadSampleError,
    BadSamplePolicy,
    SkipLog,
    SkippedSample,
    handle_bad_sample,
)
from cxr_ldm.data.image_cache import ImageCache
from cxr_ldm.data.image_io import ResizePolicy, load_gray, to_model_tensor
from cxr_ldm.data.latent_cache import LatentCache
from cxr_ldm.errors import ConfigError
from cxr_ldm.labels import CHEXPERT_LABELS


class MimicCxrDataset(Dataset):
    """Items: pixel_values (C, H, W) float32 in [-1, 1], prompt, labels (14,) float32, dicom_id, study_id,
    subject_id, view.

    With a `latent_cache`, items carry `latent_parameters` (the cached VAE posterior) instead of
    `pixel_values`, and no image is decoded.

    With `bad_sample_policy="skip"` an image that fails to decode is recorded in `skip_log` (and logged) and
    the next good row is returned instead, so an epoch always completes; with "raise" the BadSampleError
    propagates and names the file.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        images_dir: str | os.PathLike,
        image_size: int = 512,
        resize: ResizePolicy = "pad",
        channels: int = 3,
        bad_sample_policy: BadSamplePolicy = "skip",
        skip_log: SkipLog | None = None,
        image_cache: ImageCache | None = None,
        cache_rows: np.ndarray | None = None,
        latent_cache: LatentCache | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.images_dir = Path(images_dir)
        self.paths = frame["path"].astype(str).tolist()
        self.prompts = frame["prompt"].astype(str).tolist()
        self.dicom_ids = frame["dicom_id"].astype(str).tolist()
        self.study_ids = frame["study_id"].astype(np.int64).tolist()
        self.subject_ids = frame["subject_id"].astype(np.int64).tolist()
        self.views = frame["view"].astype(str).tolist()
        self.labels = torch.from_numpy(frame[list(CHEXPERT_LABELS)].to_numpy(dtype=np.float32))
        self.image_size = image_size
        self.resize = resize
        self.channels = channels
        self.bad_sample_policy = bad_sample_policy
        self.skip_log = skip_log if skip_log is not None else SkipLog()
        self.image_cache = image_cache
        # Row of each item in the image cache (the cache covers the whole index, items one split).
        self.cache_rows = cache_rows
        self.latent_cache = latent_cache
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def _cache_row(self, index: int) -> int:
        return int(self.cache_rows[index]) if self.cache_rows is not None else index

    def _image_entry(self, index: int) -> dict:
        if self.latent_cache is None:
            return {"pixel_values": to_model_tensor(self._gray(index), self.channels)}
        parameters = self.latent_cache.get(self._cache_row(index))
        if parameters is None:
            path = self.images_dir / self.paths[index]
            raise BadSampleError(path, "image could not be decoded when the latent cache was built", "image")
        return {"latent_parameters": parameters}

    def _gray(self, index: int) -> np.ndarray:
        path = self.images_dir / self.paths[index]
        if self.image_cache is not None:
            gray = self.image_cache.get(self._cache_row(index))
            if gray is None:
                raise BadSampleError(
                    path, "image could not be decoded when the image cache was built", "image"
                )
            return gray
        return load_gray(path, self.image_size, self.resize)

    def __getitem__(self, index: int) -> dict:
        count = len(self)
        for attempt in range(count):
            row = (index + attempt) % count
            if row in self._bad:
                continue
            try:
                image = self._image_entry(row)
            except BadSampleError as error:
                handle_bad_sample(error, self.bad_sample_policy, self.skip_log, "load")
                self._bad.add(row)
                continue
            return {
                **image,
                "prompt": self.prompts[row],
                "labels": self.labels[row].clone(),
                "dicom_id": self.dicom_ids[row],
                "study_id": self.study_ids[row],
                "subject_id": self.subject_ids[row],
                "view": self.views[row],
            }
        raise ConfigError(
            f"no image of this dataset ({count} rows under {self.images_dir}) could be decoded; "
            f"the skipped files are listed in {getattr(self.skip_log, 'folder', None) or 'the log'}"
        )

    @property
    def skipped(self) -> list[SkippedSample]:
        """Files skipped at load time by this process and its DataLoader workers."""
        return self.skip_log.records()
