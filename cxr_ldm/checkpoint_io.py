"""Checkpoints written atomically (a crash mid-write leaves the previous file intact), and read safely.

Every checkpoint is read with torch's `weights_only=True`: tensors and plain data only, so a checkpoint
from elsewhere cannot run code when it is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cxr_ldm.data.atomic import make_temporary
from cxr_ldm.errors import ConfigError


class UnsafeCheckpointError(ConfigError):
    """A checkpoint holds more than tensors and plain data; it was not opened."""


def read_checkpoint(path: str | Path, option: str = "checkpoint", **kwargs: Any) -> dict[str, Any]:
    """`torch.load(path, weights_only=True)`; a file that needs arbitrary unpickling is refused, by name."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except Exception as error:
        if "weights_only" not in str(error) and "Weights only" not in str(error):
            raise
        first = str(error).strip().splitlines()
        raise UnsafeCheckpointError(
            f"{option}: {path} holds objects other than tensors and plain data, so it was not opened "
            "(loading it could run code). Use a checkpoint written by this project's training, or, if you "
            f"trust the file, re-save its tensors. ({first[0] if first else error.__class__.__name__})"
        ) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temporary file in the same folder, fsync it, then rename over the target.

    The temporary file names its host and process, so the next run (`RunCheckpoint`) can remove one that a
    killed run left behind.

    Why not Lightning's own `TorchCheckpointIO` (Lightning 2.6): it serialises into memory and writes
    through an fsspec transaction, whose local file is a `tempfile.mkstemp()` in the system temporary
    folder, committed with `shutil.move`. Where that folder is another file system than the checkpoint's
    (a tmpfs `/tmp`, node-local disk with checkpoints on shared storage) the move is a copy that writes
    the target in place, so a kill mid-copy leaves a half-written `last.ckpt`; nothing is fsynced; and a
    killed run's temporary file stays in `/tmp` (checkpoint-sized) with no name to find it by.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        target = Path(path)
        handle, tmp = make_temporary(target)
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(checkpoint, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
