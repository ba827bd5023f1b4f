"""The real images of one split of a data module, decoded once into an `ImageSet` (uint8)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from cxr_ldm.data.image_set import ImageSet, to_uint8
from cxr_ldm.errors import ConfigError

LOG = logging.getLogger(__name__)


def read_split(
    datamodule, split: str, limit: int | None = None, seed: int = 0, *, key: str = "split"
) -> ImageSet:
    """Up to `limit` images of `split` (a seeded subset, in split order, when the split is larger).

    prompts, labels and ids (dicom ids) come with each decoded item; `reports` is the index's `section` text
    of each image when the data module has an index with that column, else the prompts. `key` names the
    option that chose the split in the error for an unknown split.
    """
    datamodule.setup()
    datasets = getattr(datamodule, "datasets", {})
    if split not in datasets:
        raise ConfigError(f"{key}: {split!r} is not a split of the data module ({sorted(datasets)})")
    dataset = datasets[split]
    if len(dataset) == 0:
        raise ConfigError(
            f"the {split!r} split of the data is empty; check the data module and its options (root, views, ...)"
        )
    rows = np.arange(len(dataset))
    if limit is not None and len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    images, labels, prompts, ids = [], [], [], []
    for batch in DataLoader(Subset(dataset, rows.tolist()), batch_size=64, num_workers=0):
        images.append(to_uint8(batch["pixel_values"]))
        labels.append(batch["labels"].float())
        prompts += list(batch["prompt"])
        ids += [str(i) for i in batch["dicom_id"]]
    reports = prompts
    index = getattr(datamodule, "index", None)
    if index is not None and "section" in index:
        sections = index[index["split"] == split]["section"].astype(str).to_numpy()
        reports = [sections[i] for i in rows]
    found = ImageSet(torch.cat(images), torch.cat(labels), prompts, ids, reports=list(reports))
    return _without_stand_ins(found, dataset, rows, split)


def _without_stand_ins(found: ImageSet, dataset, rows: np.ndarray, split: str) -> ImageSet:
    """Under `bad_sample_policy: skip` a dataset hands out the next readable image in place of one that
    cannot be read (its skip is logged and counted there); a split read once keeps each image once, with its
    own report, and leaves the unreadable rows out."""
    expected = getattr(dataset, "dicom_ids", None)
    if expected is None:
        return found
    kept = [i for i, row in enumerate(rows) if found.ids[i] == str(expected[row])]
    if len(kept) == len(rows):
        return found
    if not kept:
        raise ConfigError(f"no image of the {split!r} split could be read; see the skipped files in the log")
    LOG.warning("the %r split: %d of %d images could not be read and are left out (skipped, as logged)",
                split, len(rows) - len(kept), len(rows))  # fmt: skip
    return found.take(kept)
