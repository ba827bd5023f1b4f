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
    phantom is never deleted. The phantom is made in a sibling folder `.<name>.partial` and renamed into
    place when complete, so a run killed while making it leaves no half tree at `data` (the next run
    deletes the partial folder and starts again).
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
    partial = data.with_name(f".{data.name}.partial")
    if partial.exists():
        say(f"deleting {partial}: a phantom whose making was cut short")
        shutil.rmtree(partial)
    generate_phantom(partial, studies, size, seed, progress=False)
    partial.rename(data)
