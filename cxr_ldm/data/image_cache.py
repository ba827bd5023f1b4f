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
from cxr_ldm.data.memmap_rows import MemmapRows, write_valid_rows

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
        write_valid_rows(folder / VALID_FILE, valid)


class ImageCache(MemmapRows):
    """Read side of the image cache: `get(row)` is the cached uint8 image, or None if it failed to decode."""

    array_file = IMAGES_FILE
    valid_file = VALID_FILE
