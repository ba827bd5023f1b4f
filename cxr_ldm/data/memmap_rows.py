"""A cache folder of rows: a `.npy` array beside a `.npy` mask of the rows that built (read lazily, mask
written atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cxr_ldm.data.atomic import atomic_path


def write_valid_rows(path: str | os.PathLike, valid: np.ndarray) -> None:
    """The mask of rows that built, written atomically (the cache counts as ready once it exists)."""
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as handle:
        np.save(handle, valid)


class MemmapRows:
    """Rows of `folder/<array_file>`, memory-mapped on first use, so pickling one (into DataLoader workers)
    carries the folder only; `get` gives a row through `convert`, or None where `folder/<valid_file>` says the
    row did not build. Subclasses name the files and the conversion."""

    array_file: str
    valid_file: str = "valid.npy"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._rows: np.ndarray | None = None
        self._valid: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rows": None, "_valid": None}

    def _open(self) -> None:
        if self._rows is None:
            self._rows = np.load(self.folder / self.array_file, mmap_mode="r")
            self._valid = np.load(self.folder / self.valid_file)

    def __len__(self) -> int:
        self._open()
        return len(self._rows)

    def convert(self, row: np.ndarray):
        return np.asarray(row)

    def get(self, row: int):
        self._open()
        return self.convert(self._rows[row]) if self._valid[row] else None
