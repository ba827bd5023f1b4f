"""How a file is told apart from the file that was there before: its stamp (size and modification time,
cheap, recorded in keys and caches' records) and its digest (its bytes)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_stamp(path: str | os.PathLike) -> list[int] | None:
    """A file's size and modification time (ns), None when it is missing: what tells a changed file cheaply."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def change_stamp(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The stamp, the inode and the status-change time: what a cache of a file's digest in memory is keyed
    by. A file copied over another with its size and modification time kept (`cp -p`, `rsync -t`) still
    changes the last two, which no copy can set back."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def file_digest(path: str | os.PathLike) -> str:
    """Content hash of one file, 16 hex digits (a checkpoint refit under the same path is another model)."""
    hasher = hashlib.sha256()
    with open(Path(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()[:16]
