"""The phantom an experiment declares, made when missing (or when the folder holds a phantom of other settings)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cxr_ldm.errors import ConfigError


def ensure_phantom(data: Path, studies: int, size: int, seed: int = 0, say=print) -> None:
    """Make the phantom at `data`, or keep the one there when it was made with the same settings.

    A phantom of other settings (an earlier run's size) is made anew: the manifest proves the folder is a
    phantom, and the data caches key on the CSV files, so nothing stale is read. A folder that is not a
    phantom is never deleted.
    """
    from cxr_ldm.phantom import generate_phantom

    data = Path(data)
    wanted = {"studies": studies, "size": size, "seed": seed, "corrupt": 0.0}
    manifest = data / "phantom-manifest.json"
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        if made.get("params") == wanted:
            return
        if made.get("generator") != "cxr_ldm.phantom":
            raise ConfigError(f"{data} is not a phantom made by cxr_ldm; set data.root to another folder")
        say(f"{data} holds a phantom of other settings ({made.get('params')}); making it anew")
        shutil.rmtree(data)
    elif data.exists() and any(data.iterdir()):
        raise ConfigError(
            f"data.root {data} exists but holds no phantom-manifest.json; set data.phantom: null for real data "
            "or data.root to an empty or missing folder"
        )
    generate_phantom(data, studies, size, seed, progress=False)
