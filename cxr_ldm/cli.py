"""The LightningCLI behind `python -m cxr_ldm fit|validate|test|predict`."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from cxr_ldm.checkpoint_io import AtomicCheckpointIO
from cxr_ldm.errors import ConfigError

LOGGER = logging.getLogger("cxr_ldm")

# Lightning's own ckpt_path words; anything else is a file path.
_CKPT_WORDS = {"last", "best", "hpc", "registry"}


def vae_downsampling(model) -> int | None:
    """How many pixels one latent cell covers (8 for Stable Diffusion's VAE), or None without a VAE."""
    vae = getattr(model, "vae", None)
    blocks = getattr(getattr(vae, "config", None), "block_out_channels", None)
    return 2 ** (len(blocks) - 1) if blocks else None


def check_image_size(model, datamodule) -> None:
    """The data's image side must be a multiple of the model's VAE downsampling factor."""
    factor = vae_downsampling(model)
    size = getattr(datamodule, "image_size", None)
    if size is None:
        size = getattr(getattr(datamodule, "hparams", {}), "get", lambda _k: None)("image_size")
    if factor and isinstance(size, int) and size % factor:
        raise ConfigError(
            f"data.init_args.image_size {size} is not a multiple of the VAE's downsampling factor {factor}; "
            f"use {size - size % factor} or {size - size % factor + factor}"
        )


def last_checkpoints(trainer) -> tuple[set[str], list[str]]:
    """The last-checkpoint files `--ckpt_path last` would resume from, and the folders searched."""
    from cxr_ldm.callbacks.run_checkpoint import RunCheckpoint

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


def _model_sections(args: Sequence[str]) -> list[tuple[str, dict]]:
    """(where, `model` mapping) of each `--config` file and `--model...` option in `args`, in order."""
    from cxr_ldm.config_files import read_config

    found: list[tuple[str, dict]] = []
    for index, arg in enumerate(args):
        path = args[index + 1] if arg in ("--config", "-c") and index + 1 < len(args) else None
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path is not None and Path(path).is_file():
            model = read_config(path).get("model")
            if isinstance(model, dict):
                found.append((path, model))
        elif arg.startswith("--model.init_args."):
            found.append(("the command line", {"init_args": {arg[18:].split("=")[0].split(".")[0]: None}}))
        elif arg in ("--model", "--model.class_path") or arg.startswith(("--model=", "--model.class_path=")):
            value = arg.split("=", 1)[1] if "=" in arg else (args[index + 1] if index + 1 < len(args) else "")
            found.append(("the command line", {"class_path": value}))
    return found


def refuse_flat_model_keys(args: Sequence[str]) -> None:
    """A LatentDiffusion config from before the model's typed parts (`model.init_args.snr_gamma`, ...) is
    refused with each old key's new place, instead of jsonargparse's bare "not accepted"."""
    from cxr_ldm.models.diffusion_parts import FLAT_ARGUMENTS, new_key

    sections = _model_sections(args)
    class_paths = [model["class_path"] for _, model in sections if model.get("class_path")]
    if not class_paths or not str(class_paths[-1]).endswith("LatentDiffusion"):
        return
    old = [
        f"{where}: model.init_args.{key} -> {new_key(key)}"
        for where, model in sections
        for key in (model.get("init_args") or {})
        if key in FLAT_ARGUMENTS
    ]
    if old:
        raise ConfigError(
            "LatentDiffusion's arguments are grouped in typed parts (components, objective, conditioning, ema, "
            "optimization, speed); rename these keys (docs/variants.md lists every part):\n  "
            + "\n  ".join(old)
        )


def part_nulls_as_mappings(args: Sequence[str]) -> list[str]:
    """`--model.init_args.PART.FIELD null` as `--model.init_args.PART {"FIELD": null}`.

    jsonargparse reads a command-line null for a field of a dataclass inside a subclass's init_args as the
    string "None" (or refuses it); the mapping form sets the same field and keeps the part's other fields.
    Only a part's own fields are rewritten; a null deeper inside one (a field of
    `conditioning.textual_inversion`) is set in a config file, where YAML's null is read right.
    """
    from cxr_ldm.models.diffusion_parts import PARTS

    out: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        key, joined, value = arg.partition("=")
        if not joined and index + 1 < len(args):
            value = args[index + 1]
        names = key.removeprefix("--model.init_args.").split(".")
        if key.startswith("--model.init_args.") and len(names) == 2 and names[0] in PARTS and value in _NULLS:
            out.append(f"--model.init_args.{names[0]}={json.dumps({names[1]: None})}")
            index += 1 if joined else 2
            continue
        out.append(arg)
        index += 1
    return out


_NULLS = {"null", "None", "~", "Null", "NULL"}


class CxrLdmCLI(LightningCLI):
    """Subclass mode for model and data, so any config names its classes with `class_path`.

    Besides Lightning's own checks: a logger without `save_dir` writes under `trainer.default_root_dir`;
    the data's image size must suit the model's VAE; `--ckpt_path last` with no checkpoint is an error
    naming the folders searched (`--ckpt_path auto` resumes when there is one and starts afresh otherwise).
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"trainer.plugins": [{"class_path": "cxr_ldm.checkpoint_io.AtomicCheckpointIO"}]})

    def parse_arguments(self, parser, args) -> None:
        if isinstance(args, list | tuple):
            refuse_flat_model_keys([str(arg) for arg in args])
            args = part_nulls_as_mappings([str(arg) for arg in args])
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        loggers = config.get("trainer.logger")
        root = config.get("trainer.default_root_dir") or os.getcwd()
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init = getattr(logger, "init_args", None)
            if init is not None and "save_dir" in init and init.get("save_dir") is None:
                init["save_dir"] = str(root)

    def _check_run(self) -> None:
        check_image_size(self.model, self.datamodule)
        config = self.config_init[self.subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path in ("last", "auto"):
            found, looked = last_checkpoints(self.trainer)
            where = (
                ", ".join(looked) or "no folder (the run has no ModelCheckpoint callback with a fixed folder)"
            )
            if not found and ckpt_path == "last":
                raise ConfigError(
                    f"--ckpt_path last: no checkpoint to resume from in {where}; leave out --ckpt_path to "
                    "start from scratch (or --ckpt_path auto: resume when there is one), or give a .ckpt path"
                )
            if ckpt_path == "auto":
                LOGGER.warning(
                    "--ckpt_path auto: %s",
                    f"resuming from {max(found, key=os.path.getmtime)}"
                    if found
                    else f"no checkpoint in {where}, starting afresh",
                )
                config["ckpt_path"] = "last" if found else None
        elif ckpt_path is not None and ckpt_path not in _CKPT_WORDS and "://" not in str(ckpt_path):
            if not Path(ckpt_path).expanduser().is_file():
                raise ConfigError(f"--ckpt_path {ckpt_path} does not exist (or is not a file)")

    before_fit = before_validate = before_test = before_predict = _check_run

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        # `--ckpt_path` (resume, validate, test) reads tensors and plain data only, whatever torch's default
        if "weights_only" in parser.get_defaults():
            parser.set_defaults(weights_only=True)
        return parser


def run_lightning_cli(args: list[str], run: bool = True) -> CxrLdmCLI:
    """Run the CLI on `args`, the subcommand first (`["fit", "--config", "a.yaml"]`); `sys.argv` stays as it is.

    With `run=False`, `args` hold no subcommand: model, data module and Trainer are built, nothing runs."""
    # Frozen components stay in eval mode on purpose; Lightning's notice about it is noise here.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # `python -m cxr_ldm fit ...` hands its own command line over as `args`; Lightning would warn about both.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within")
    return CxrLdmCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=list(args),
        run=run,
    )


def _option_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def fit_args(
    configs: Sequence[str | Path],
    overrides: Mapping[str, Any] | None = None,
    *,
    args: Sequence[str] = (),
    ckpt_path: str | Path | None = None,
) -> list[str]:
    """The `fit` command line of `run_fit` (what `python -m cxr_ldm` would be given for the same run)."""
    line = ["fit"]
    for config in configs:
        line += ["--config", str(config)]
    for key, value in (overrides or {}).items():
        line += [f"--{key}", _option_value(value)]
    line += list(args)
    if ckpt_path is not None:
        line += ["--ckpt_path", str(ckpt_path)]
    return line


def run_fit(
    configs: Sequence[str | Path],
    overrides: Mapping[str, Any] | None = None,
    *,
    args: Sequence[str] = (),
    ckpt_path: str | Path | None = None,
) -> CxrLdmCLI:
    """Train from config files, as `python -m cxr_ldm fit --config A --config B ...` does, from Python.

    `configs` apply in order; `overrides` maps dotted keys to values (`{"trainer.max_steps": 2,
    "data.init_args.max_images": {"train": 50}}`); `args` are further command-line options as strings (a
    user's extra `fit` options); `ckpt_path` is `auto` (resume when a last checkpoint exists), `last` (resume,
    an error without one) or a file. Returns the finished CLI (its `trainer`, `model`, `datamodule`). A user
    error raises `ConfigError`; nothing reads or changes `sys.argv`.
    """
    return run_lightning_cli(fit_args(configs, overrides, args=args, ckpt_path=ckpt_path))


__all__ = ["AtomicCheckpointIO", "CxrLdmCLI", "fit_args", "run_fit", "run_lightning_cli"]
