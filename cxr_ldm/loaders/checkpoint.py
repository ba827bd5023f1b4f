"""Load a LightningModule checkpoint of the expected kind, with errors that say which file and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from lightning import LightningModule

from cxr_ldm.checkpoint_io import read_checkpoint
from cxr_ldm.errors import ConfigError

M = TypeVar("M", bound=LightningModule)

# The first parameter prefix of each model kind, to tell checkpoints apart before loading them.
KIND_PREFIXES = {
    "LatentDiffusion": "unet.",
    "CxrClassifier": "net.",
    "ImageTextRetriever": "image_encoder.",
}


def checkpoint_kind(path: str | Path, option: str = "checkpoint") -> str | None:
    """Which of this project's models a checkpoint holds, from its parameter names; None if unknown."""
    checkpoint = read_checkpoint(path, option, mmap=True)
    # frozen pretrained components are left out of the state dict (models/frozen_sources.py)
    keys = [*checkpoint.get("state_dict", {}), *(f"{c}." for c in checkpoint.get("frozen_pretrained", {}))]
    for kind, prefix in KIND_PREFIXES.items():
        if any(key.startswith(prefix) for key in keys):
            return kind
    return None


def load_checkpoint(path: str | Path, cls: type[M], option: str) -> M:
    """`cls.load_from_checkpoint(path)` on the CPU, after checking the file exists and holds a `cls`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{option}: checkpoint {path} does not exist; train one with `python -m cxr_ldm fit`"
        )
    kind = checkpoint_kind(path, option)
    if kind != cls.__name__:
        found = f"a {kind}" if kind else "no model this project knows"
        raise ConfigError(f"{option}: {path} holds {found}, not a {cls.__name__} checkpoint")
    model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    model.eval()
    return model
