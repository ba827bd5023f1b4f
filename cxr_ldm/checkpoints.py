"""Checkpoints, in one place: written atomically, read safely, slim of frozen pretrained weights, found to resume.

- Written atomically (`AtomicCheckpointIO`): a crash mid-write leaves the previous file intact.
- Read with torch's `weights_only=True` (`read_checkpoint`, `load_checkpoint`): tensors and plain data only,
  so a checkpoint from elsewhere cannot run code when it is opened; a file of another model kind is refused
  by name.
- Frozen pretrained weights stay out of checkpoints (`find_frozen_pretrained`, `drop_frozen`,
  `restore_frozen`). A LoRA or textual-inversion run trains megabytes on top of gigabytes that never change.
  A component that is both frozen and loaded from a pretrained source (hub id or directory) is rebuilt from
  that source whenever the model is built, so its weights are left out of every checkpoint. The checkpoint
  records the source and a hash of the left-out tensors; on resume and `load_from_checkpoint` the rebuilt
  weights must hash the same (otherwise the error names the component and its source), and they are put
  back into the state dict before it is loaded. Components built from a config (random weights) cannot be
  rebuilt and are always saved, as are the trained parts nested in a frozen component (LoRA adapters, new
  token rows).
- A `LatentDiffusion`'s own entries (`write_model_entries`, `read_model_entries`): EMA shadows, skipped
  non-finite steps, and the older formats (EMA as module buffers, a text encoder's pooler) still load.
- Found to resume (`RunCheckpoint`, `last_checkpoints`): checkpoints live in `<default_root_dir>/checkpoints`,
  so a restarted run finds `last.ckpt`. Lightning's default folder includes the logger's version, which a
  restart increments: `--ckpt_path last` would then find nothing and silently start from scratch.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cxr_ldm.data.atomic import clean_stale_temporaries, make_temporary
from cxr_ldm.errors import ConfigError

M = TypeVar("M", bound=LightningModule)

# --- written atomically, read safely


class UnsafeCheckpointError(ConfigError):
    """A checkpoint holds more than tensors and plain data; it was not opened."""


def _unreadable(option: str, path: str | Path, cause: str) -> str:
    return (
        f"{option}: {path} could not be read as a PyTorch checkpoint ({cause}): it is truncated (a copy or "
        "download cut short) or no checkpoint; use another one"
    )


def read_checkpoint(path: str | Path, option: str = "checkpoint", **kwargs: Any) -> dict[str, Any]:
    """`torch.load(path, weights_only=True)`; a file that needs arbitrary unpickling is refused, by name, and
    so is one torch cannot read (truncated, or no PyTorch file)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except FileNotFoundError:
        raise ConfigError(f"{option}: checkpoint {path} does not exist") from None
    except OSError as error:
        if isinstance(error, PermissionError) or zipfile.is_zipfile(path):
            raise ConfigError(
                f"{option}: {path} could not be opened ({error}); check that it can be read, or copy it to a "
                "local disk if its file system cannot map files"
            ) from None
        # a file cut short may end where the reader seeks before the start ([Errno 22] Invalid argument)
        raise ConfigError(_unreadable(option, path, str(error))) from None
    except Exception as error:
        first = str(error).strip().splitlines()
        if "weights_only" not in str(error) and "Weights only" not in str(error):
            raise ConfigError(
                _unreadable(option, path, first[0] if first else error.__class__.__name__)
            ) from None
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


# The first parameter prefix of each model kind, to tell checkpoints apart before loading them.
KIND_PREFIXES = {
    "LatentDiffusion": "unet.",
    "CxrClassifier": "net.",
    "ImageTextRetriever": "image_encoder.",
}


def checkpoint_kind(path: str | Path, option: str = "checkpoint") -> str | None:
    """Which of this project's models a checkpoint holds, from its parameter names; None if unknown."""
    return _kind_of(read_checkpoint(path, option, mmap=True))


def _kind_of(checkpoint: dict[str, Any]) -> str | None:
    # frozen pretrained components are left out of the state dict (see "frozen pretrained weights left out" below)
    keys = [*checkpoint.get("state_dict", {}), *(f"{c}." for c in checkpoint.get("frozen_pretrained", {}))]
    for kind, prefix in KIND_PREFIXES.items():
        if any(key.startswith(prefix) for key in keys):
            return kind
    return None


def check_resumes(path: str | Path, model: torch.nn.Module, option: str = "--ckpt_path") -> None:
    """Refuse a checkpoint that `model` cannot be restored from (another kind of model, or one built with other
    settings) with one line naming both, before Lightning would fail on it with every key it missed. Parameters
    the checkpoint leaves out (frozen pretrained parts) are the model's own concern."""
    checkpoint = read_checkpoint(path, option, mmap=True)  # a file cut short, or one that runs code: one line
    wanted, kind = type(model).__name__, _kind_of(checkpoint)
    if wanted in KIND_PREFIXES:
        fix = ": give a checkpoint that this config's model wrote, or the config it was trained with"
        _refuse_other_kind(kind, wanted, f"{option} {path}", fix)
    own = model.state_dict()
    saved = checkpoint.get("state_dict", {})
    unexpected = [key for key in saved if key not in own]
    reshaped = [key for key in saved if key in own and tuple(saved[key].shape) != tuple(own[key].shape)]
    if unexpected or reshaped:
        shapes = [f"{key} {tuple(saved[key].shape)} vs {tuple(own[key].shape)}" for key in reshaped[:3]]
        raise ConfigError(
            f"{option} {path} was written by a {wanted} built with other settings ("
            + "; ".join(
                [
                    *shapes,
                    *(
                        [f"{len(unexpected)} parameters this model lacks, e.g. {unexpected[0]}"]
                        if unexpected
                        else []
                    ),
                ]
            )
            + "): resume with the config it was trained with (its run folder keeps it as config.yaml), or leave "
            "--ckpt_path out to start afresh"
        )


def _refuse_other_kind(kind: str | None, wanted: str, where: str, fix: str = "") -> None:
    if kind != wanted:
        found = f"a {kind}" if kind else "no model this project knows"
        raise ConfigError(f"{where} holds {found}, not a {wanted} checkpoint{fix}")


def check_checkpoint_file(path: str | Path, kind: str, option: str) -> Path:
    """`path` as a Path once it is known to be a checkpoint file holding a `kind` (`LatentDiffusion`, ...); a
    ConfigError naming `option` for a folder, a missing file or another model's checkpoint."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{option}: {path} is a folder; give the .ckpt file (e.g. {path}/checkpoints/last.ckpt)"
        )
    if not path.is_file():
        raise ConfigError(
            f"{option}: checkpoint {path} does not exist; train one with `python -m cxr_ldm fit`"
        )
    _refuse_other_kind(checkpoint_kind(path, option), kind, f"{option}: {path}")
    return path


def load_checkpoint(path: str | Path, cls: type[M], option: str, pretrained: str | None = None) -> M:
    """`cls.load_from_checkpoint(path)` on the CPU, after checking the file exists and holds a `cls`.

    `pretrained`: where the pipeline the model was built from is now (a run moved from another machine), in
    place of the checkpoint's `components.pretrained_model_name_or_path`; the frozen parts rebuilt from it are
    still checked against the checkpoint's content hashes."""
    path = check_checkpoint_file(path, cls.__name__, option)
    if pretrained is None:
        model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    else:
        components = (
            read_checkpoint(path, option, mmap=True).get("hyper_parameters", {}).get("components") or {}
        )
        components = {**components, "pretrained_model_name_or_path": pretrained}
        model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True, components=components)
    model.eval()
    return model


# --- frozen pretrained weights left out

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


# --- a LatentDiffusion's own entries

EMA_KEY = "ema"
NONFINITE_KEY = "nonfinite_steps_skipped"


def write_model_entries(
    checkpoint: dict, frozen: dict[str, FrozenPretrained], ema, nonfinite_steps_skipped: int, frozen_dtype
) -> None:
    """What a `LatentDiffusion` adds to a checkpoint Lightning is writing: the EMA shadows (`ema`, an
    `EmaWeights` or None), the count of skipped non-finite steps; frozen pretrained weights are left out,
    and frozen weights cast for the fit (`frozen_dtype`, a `FrozenDtype`) are saved with their original
    values."""
    if ema is not None:
        checkpoint[EMA_KEY] = ema.state_dict()
    checkpoint[NONFINITE_KEY] = nonfinite_steps_skipped
    drop_frozen(checkpoint, frozen)  # rebuilt from their source on load
    # Only the cast weights still in the checkpoint (after the pretrained ones were dropped) are copied back.
    if frozen_dtype.active and "state_dict" in checkpoint:
        frozen_dtype.mend_state_dict(checkpoint["state_dict"])


def read_model_entries(
    checkpoint: dict, frozen: dict[str, FrozenPretrained], state: dict[str, torch.Tensor], ema
) -> int:
    """Ready a checkpoint's state dict for a `LatentDiffusion` (`state` from its `state_dict(keep_vars=True)`)
    and load its EMA into `ema` (an `EmaWeights` or None); returns the count of skipped non-finite steps.

    Older checkpoints load too: EMA shadows kept as module buffers (`ema.shadow_<i>`, `ema.num_updates`)
    and the weights of a text encoder's pooler, which is no longer built."""
    restore_frozen(checkpoint, frozen, state)
    weights = checkpoint["state_dict"]
    reshaped = [key for key, value in weights.items() if key in state and state[key].shape != value.shape]
    if reshaped:
        key = reshaped[0]
        raise ConfigError(
            f"the checkpoint's {key} has shape {tuple(weights[key].shape)}, this model's {tuple(state[key].shape)} "
            f"({len(reshaped)} such tensors): it was trained with another model config (components, conditioning, "
            "lora); resume or load it with the config it was trained with"
        )
    legacy = {k: weights.pop(k) for k in [k for k in weights if k.startswith("ema.")]}  # EMA as buffers
    for key in [k for k in weights if k.startswith("text.encoder.pooler.")]:  # the pooler is not built
        del weights[key]
    if ema is not None:
        if EMA_KEY in checkpoint:
            ema.load_state_dict(checkpoint[EMA_KEY])
        elif legacy:
            names = list(ema.named_shadows())
            shadows = {name: legacy[f"ema.shadow_{i}"] for i, name in enumerate(names)}
            ema.load_state_dict({"shadows": shadows, "num_updates": legacy["ema.num_updates"]})
    return int(checkpoint.get(NONFINITE_KEY, 0))


# --- found to resume


class RunCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` with a folder that does not change between restarts of the same run, whose
    `last.ckpt` (with `save_last`) always holds the fit's final state when the fit ends.

    Lightning saves `last.ckpt` at the end of training only when its process saved no checkpoint: a fit of
    250 steps with a checkpoint every 100 ended with the step-200 `last.ckpt` when run straight through, and
    with the step-250 one when resumed from step 200 (no checkpoint in the resumed process), so the model
    judged from `last.ckpt` depended on where the fit had been interrupted.

    A fit started afresh in the folder of an earlier one writes over its files (Lightning's version counter
    is off): with the counter, its final state went to `last-v1.ckpt` while `last.ckpt` kept the earlier run's,
    which export and evaluation then read.
    """

    def __init__(self, *args: Any, enable_version_counter: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # not saved at this step
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)

    def _pin_dirpath(self, trainer: Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._pin_dirpath(trainer)
        if trainer.is_global_zero:  # temporary files of a killed run's checkpoint writes
            clean_stale_temporaries(self.dirpath, recursive=False)
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: Trainer) -> set[str]:
        self._pin_dirpath(trainer)
        return super()._find_last_checkpoints(trainer)


def last_checkpoints(trainer: Trainer) -> tuple[set[str], list[str]]:
    """The last-checkpoint files `--ckpt_path last` would resume from, and the folders searched."""
    found: set[str] = set()
    looked: list[str] = []
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        if isinstance(callback, RunCheckpoint):
            callback._pin_dirpath(trainer)
        if callback.dirpath is None:
            continue
        looked.append(str(callback.dirpath))
        found |= set(callback._find_last_checkpoints(trainer))
    return found, looked
