"""Atomic file writes and option hashes, so caches shared by several processes are never half-written
and are rebuilt whenever an option that shapes them changes.

A temporary file is named `.<target>.<host>-<pid>.<random>.tmp`. A process killed mid-write (kill -9, a
lost node) leaves it behind; `clean_stale_temporaries` removes the ones whose writer is gone: on this host,
a process id that no longer runs; otherwise (another host on a shared file system, or an older name) a
file last written before the cleaning process started and at least `FOREIGN_STALE_SECONDS` ago, since a
writer on another node that is still at work keeps touching its file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("cxr_ldm")
# When this process started (close enough: when cxr_ldm's data package was first imported).
PROCESS_START = time.time()
FOREIGN_STALE_SECONDS = 600
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def _file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def make_temporary(target: str | os.PathLike) -> tuple[int, str]:
    """Create (mkstemp) a temporary file next to `target`, named after it, this host and this process.

    mkstemp makes the file private (0600); it gets the mode a plain write would have given, so a
    checkpoint or cache renamed from it is readable by whoever the user's umask lets read it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{target.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=target.parent
    )
    os.fchmod(handle, _file_mode())
    return handle, name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_temporary(path: Path) -> bool:
    """A `.*.tmp` file whose writer is gone (see the module docstring); never one of this process's."""
    match = _TEMPORARY.match(path.name)
    if match and match["host"] == _HOST:
        pid = int(match["pid"])
        return pid != os.getpid() and not _alive(pid)
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return False
    return modified < PROCESS_START and modified < time.time() - FOREIGN_STALE_SECONDS


def clean_stale_temporaries(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete the temporary files left in `folder` by killed writers; returns what was deleted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        if path.is_file() and is_stale_temporary(path):
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append(path)
            LOGGER.warning("removed %s (%d bytes) left by an interrupted write", path, size)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to `path`; on success move it into place with os.replace."""
    target = Path(path)
    fd, tmp = make_temporary(target)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)


def options_key(options: dict[str, Any], length: int = 16) -> str:
    """A short stable hash of JSON-serialisable options (keys sorted)."""
    blob = json.dumps(options, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
