"""Frozen pretrained weights stay out of checkpoints; a content hash checks they are the same on reload.

A LoRA or textual-inversion run trains megabytes on top of gigabytes that never change. A component that
is both frozen and loaded from a pretrained source (hub id or directory) is rebuilt from that source
whenever the model is built, so its weights are left out of every checkpoint. The checkpoint records the
source and a hash of the left-out tensors; on resume and `load_from_checkpoint` the rebuilt weights must
hash the same (otherwise the error names the component and its source), and they are put back into the
state dict before it is loaded. Components built from a config (random weights) cannot be rebuilt and are
always saved, as are the trained parts nested in a frozen component (LoRA adapters, new token rows).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from cxr_ldm.errors import ConfigError

CHECKPOINT_KEY = "frozen_pretrained"


class FrozenSourceChanged(ConfigError):
    """A frozen component rebuilt from its source differs from the one the checkpoint was trained with."""


def content_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the tensors, in name order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


@dataclass
class FrozenPretrained:
    """One frozen component loaded from `source`: its state-dict keys and their content hash."""

    source: str
    keys: list[str]
    sha256: str


def find_frozen_pretrained(
    state: dict[str, torch.Tensor], loaded: dict[str, tuple[str, list[torch.Tensor]]], frozen: set[str]
) -> dict[str, FrozenPretrained]:
    """Per frozen component in `loaded` ({name: (source, the tensors read from it)}), the state-dict keys
    (`state` from `state_dict(keep_vars=True)`) that hold those very tensors, and their hash."""
    found = {}
    for name, (source, tensors) in loaded.items():
        if name not in frozen:
            continue
        ids = {id(t) for t in tensors}  # `tensors` keeps them alive: no id is reused meanwhile
        keys = [key for key, tensor in state.items() if id(tensor) in ids]
        if keys:
            found[name] = FrozenPretrained(source, keys, content_hash({k: state[k] for k in keys}))
    return found


def drop_frozen(checkpoint: dict, frozen: dict[str, FrozenPretrained]) -> None:
    """Leave the frozen pretrained tensors out of `checkpoint["state_dict"]`; record source and hash."""
    state = checkpoint["state_dict"]
    for part in frozen.values():
        for key in part.keys:
            state.pop(key, None)
    checkpoint[CHECKPOINT_KEY] = {
        name: {"source": part.source, "sha256": part.sha256, "num_tensors": len(part.keys)}
        for name, part in frozen.items()
    }


def restore_frozen(
    checkpoint: dict, frozen: dict[str, FrozenPretrained], state: dict[str, torch.Tensor]
) -> None:
    """Check the rebuilt components against the checkpoint's record and put their tensors back."""
    for name, recorded in checkpoint.get(CHECKPOINT_KEY, {}).items():
        part = frozen.get(name)
        if part is None:
            raise FrozenSourceChanged(
                f"the checkpoint left out the frozen {name}, to be rebuilt from {recorded['source']}, but this "
                f"model does not load a frozen {name} from a pretrained source; build it as the checkpoint's "
                "hyperparameters say (model.init_args)"
            )
        if part.sha256 != recorded["sha256"] or len(part.keys) != recorded["num_tensors"]:
            raise FrozenSourceChanged(
                f"the frozen {name} rebuilt from {part.source} is not the one this checkpoint was trained with "
                f"(from {recorded['source']}; content hash {part.sha256[:12]} != {recorded['sha256'][:12]}): "
                f"the checkpoint does not hold the {name}'s weights, so point the model at the same weights "
                "(model.init_args.components.pretrained_model_name_or_path / text_encoder_name_or_path, revision)"
            )
        for key in part.keys:
            checkpoint["state_dict"][key] = state[key].detach()
