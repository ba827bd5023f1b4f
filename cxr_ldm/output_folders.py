"""An output folder named by an option or a config key: a path that is a file (or lies under one) is refused
before any work, with the option and the fix, by every command that writes a folder."""

from __future__ import annotations

import os
from pathlib import Path

from cxr_ldm.errors import ConfigError


def check_output_folder(path: str | os.PathLike, option: str, contents: str) -> Path:
    """`path` as a Path, once it is known to be a folder or nothing yet; a ConfigError naming `option`
    (`--out`, `out:`, `trainer.default_root_dir`) when it, or a folder above it, is an existing file.
    `contents` says what the folder is for, in the message ("the images")."""
    path = Path(path).expanduser()
    for folder in (path, *path.parents):
        if folder.exists() and not folder.is_dir():
            where = f"{option} {path} is a file" if folder == path else f"{option} {path}: {folder} is a file"
            raise ConfigError(f"{where}; give a folder for {contents}")
        if folder.is_dir():
            break
    return path
