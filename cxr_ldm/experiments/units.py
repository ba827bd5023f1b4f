"""Results kept per unit of work, keyed by what made them: a rerun reuses a unit made from the same inputs,
and clears (then recomputes) one made from other inputs. Every file is written atomically."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from cxr_ldm.data.atomic import write_text_atomic

KEY_FILE = "inputs.json"


def plain(value: Any) -> Any:
    """Dataclasses and paths as JSON-ready data."""
    if is_dataclass(value):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(plain(value), sort_keys=True).encode()).hexdigest()[:16]


def folder_digest(folder: Path) -> str:
    """Content hash of every file under `folder` (a pretrained pipeline directory), or the name itself when
    it is no local folder (a hub id)."""
    folder = Path(folder)
    if not folder.is_dir():
        return str(folder)
    hasher = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        hasher.update(str(path.relative_to(folder)).encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()[:16]


# Inputs recorded since results were first keyed: an external checkpoint's bytes. A record that lacks one is
# taken as made with the file as it is now, the assumption its version made, so its results stay valid; the
# folder's record is then rewritten with the key (claim_folder), so a later change of the file is seen.
ADDED_KEYS = frozenset({"evaluator_file", "retriever_file", "checkpoint_file"})


def recorded_matches(recorded: Any, inputs: Any) -> bool:
    """Recorded inputs (as read back from JSON) are `inputs`, up to `ADDED_KEYS` the record predates."""
    wanted = json.loads(json.dumps(plain(inputs)))
    return _matches(recorded, wanted)


def _matches(recorded: Any, wanted: Any) -> bool:
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        keys = {key for key in wanted if key in recorded or key not in ADDED_KEYS}
        return set(recorded) == keys and all(_matches(recorded[key], wanted[key]) for key in keys)
    if isinstance(recorded, list) and isinstance(wanted, list):
        return len(recorded) == len(wanted) and all(
            _matches(a, b) for a, b in zip(recorded, wanted, strict=True)
        )
    return recorded == wanted


# A function that writes the recorded inputs of an earlier version in today's form (a unit's own).
Upgrade = Callable[[Any], Any]


def _recorded(folder: Path) -> Any:
    try:
        return json.loads((folder / KEY_FILE).read_text())
    except (OSError, ValueError):
        return None


def folder_holds(folder: Path, inputs: dict, upgrade: Upgrade | None = None) -> bool:
    """`folder` holds the outputs of `inputs` (its recorded inputs are these, read through `upgrade` when
    given); reads, changes nothing."""
    recorded = _recorded(folder)
    if recorded is not None and upgrade is not None:
        recorded = upgrade(recorded)
    return recorded is not None and recorded_matches(recorded, inputs)


def claim_folder(folder: Path, inputs: dict, log=None, upgrade: Upgrade | None = None) -> bool:
    """Make `folder` hold the outputs of `inputs`: True when it already did (reuse what is there; its record
    read through `upgrade` when given); otherwise whatever it holds (made from other inputs) is deleted first,
    and the new inputs are recorded."""
    stamp = folder / KEY_FILE
    wanted = plain(inputs)
    recorded = _recorded(folder)
    current = recorded if recorded is None or upgrade is None else upgrade(recorded)
    if current is not None and recorded_matches(current, inputs):
        if recorded != json.loads(json.dumps(wanted)):  # a record of an earlier version: brought up to date
            write_text_atomic(stamp, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
        return True
    if folder.exists() and any(folder.iterdir()):
        if log is not None:
            log(f"clearing {folder}: made from other inputs")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stamp, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    return False


def read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
