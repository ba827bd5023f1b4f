"""The files a cache skipped (the index: missing or unreadable files; the image and latent caches: images that
did not decode), with their size and modification time when it was built. A cache whose skipped files have
changed since (restored, re-downloaded) is built again, so that a file mended as the skip's message asks is
read again instead of staying skipped."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from cxr_ldm.data.atomic import write_text_atomic
from cxr_ldm.data.file_identity import file_stamp

STAMPS_FILE = "skipped-files.json"


def record_skipped(folder: str | os.PathLike, paths: Iterable[str]) -> None:
    """Write the size and modification time (None: missing) of every skipped file into `folder`."""
    stamps = {os.path.abspath(path): file_stamp(os.path.abspath(path)) for path in paths}
    write_text_atomic(Path(folder) / STAMPS_FILE, json.dumps(stamps, indent=1, sort_keys=True) + "\n")


def changed_skipped(folder: str | os.PathLike) -> list[str]:
    """The skipped files of `folder`'s cache that are not as they were when it was built (none for a cache
    that recorded none, as caches built before this record did)."""
    record = Path(folder) / STAMPS_FILE
    if not record.is_file():
        return []
    stamps = json.loads(record.read_text())
    return [path for path, stamp in stamps.items() if file_stamp(path) != stamp]


def drop_if_skipped_changed(folder: str | os.PathLike, say) -> bool:
    """Delete the cache at `folder` when a file it skipped has changed; True when it did (`say` tells why)."""
    changed = changed_skipped(folder)
    if not changed:
        return False
    say(
        f"{folder}: {len(changed)} file(s) it skipped changed since it was built (first {changed[0]}); building it again"
    )
    shutil.rmtree(folder)
    return True
