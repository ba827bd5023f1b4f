"""A preprocessed image cache: every index row decoded once, resized, and stored as uint8 in one .npy file.

Training then reads a memory-mapped (N, S, S) array instead of decoding JPEGs, which removes decoding from
every epoch after the first build. Rows follow the index order; `valid.npy` marks rows whose image could
not be decoded. Files are written to a temporary name and moved into place, `images.npy` last, so a reader
that finds it can trust the cache is complete.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cxr_ldm.data.atomic import atomic_path, options_key
from cxr_ldm.data.bad_samples import BadSampleError, BadSamplePolicy, SkipLog, handle_bad_sample
from cxr_ldm.data.image_io import ResizePolicy, load_gray

IMAGES_FILE = "images.npy"
VALID_FILE = "valid.npy"


def image_cache_key(index_key: str, image_size: int, resize: str) -> str:
    """Key of a cache: the index it follows plus the options that change its pixels."""
    return options_key({"index": index_key, "image_size": image_size, "resize": resize, "version": 1})


def image_cache_ready(folder: str | os.PathLike) -> bool:
    return (Path(folder) / IMAGES_FILE).is_file() and (Path(folder) / VALID_FILE).is_file()


def build_image_cache(
    paths: list[Path],
    folder: str | os.PathLike,
    image_size: int,
    resize: ResizePolicy = "pad",
    policy: BadSamplePolicy = "skip",
    log: SkipLog | None = None,
    threads: int | None = None,
) -> None:
    """Decode every path (threads: Pillow releases the GIL while decoding) into `folder/images.npy`."""
    folder = Path(folder)
    log = log if log is not None else SkipLog()
    valid = np.ones(len(paths), dtype=bool)
    with atomic_path(folder / IMAGES_FILE) as tmp:
        # np.save appends .npy to names without it; open_memmap writes the exact temp name.
        images = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(paths), image_size, image_size)
        )

        def work(item: tuple[int, Path]) -> tuple[int, BadSampleError | None]:
            row, path = item
            try:
                images[row] = load_gray(path, image_size, resize)
                return row, None
            except BadSampleError as error:
                return row, error

        with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
            for row, error in pool.map(work, enumerate(paths)):
                if error is not None:
                    valid[row] = False
                    images[row] = 0
                    handle_bad_sample(error, policy, log, "load")
        images.flush()
        with atomic_path(folder / VALID_FILE) as valid_tmp, open(valid_tmp, "wb") as handle:
            np.save(handle, valid)


class ImageCache:
    """Read side of the cache; opens the memory map lazily so it is cheap to pickle into workers."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._images: np.ndarray | None = None
        self._valid: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "_images": None, "_valid": None}

    def _open(self) -> None:
        self._images = np.load(self.folder / IMAGES_FILE, mmap_mode="r")
        self._valid = np.load(self.folder / VALID_FILE)

    def __len__(self) -> int:
        if self._images is None:
            self._open()
        return len(self._images)

    def get(self, row: int) -> np.ndarray | None:
        """The cached uint8 image of an index row, or None if it failed to decode at build time."""
        if self._images is None:
            self._open()
        if not self._valid[row]:
            return None
        return np.asarray(self._images[row])
