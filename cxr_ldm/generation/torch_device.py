"""The device a model samples and evaluates on, from an option's value (`--device`, `synthesis.device`).

A name torch does not know (`gpu`), or a device this machine does not have (`cuda` without a GPU, `cuda:3`
with two), is refused naming the option and what is valid here, before any model is loaded.
"""

from __future__ import annotations

import os

import torch

from cxr_ldm.errors import ConfigError

DEVICE_NAMES = "cpu, cuda, cuda:N (the GPU of index N) or mps"


def _available_here() -> str:
    names = ["cpu"]
    count = torch.cuda.device_count()
    if count:
        names += ["cuda", *(f"cuda:{index}" for index in range(count))]
    if torch.backends.mps.is_available():
        names.append("mps")
    return ", ".join(names)


def pick_device(name: str | None, option: str) -> torch.device:
    """The device `name` names; with no name, `cuda:LOCAL_RANK` when CUDA is available, else the CPU.

    `option` is the option or key the name came from, named in the ConfigError for a name torch does not
    know, a kind of device this project does not run on, or a device this machine does not have."""
    if not name:
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(str(name))
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(
            f"{option} {name!r} is not a device this project runs on; give {DEVICE_NAMES} "
            f"(this machine has: {_available_here()})"
        )
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    missing = (device.type == "cuda" and (count == 0 or (device.index or 0) >= count)) or (
        device.type == "mps" and not torch.backends.mps.is_available()
    )
    if missing:
        what = "no CUDA device" if device.type == "cuda" and count == 0 else f"no {device} device"
        raise ConfigError(
            f"{option} {name}: {what} is available here; give one this machine has ({_available_here()})"
        )
    return device
