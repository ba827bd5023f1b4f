"""The LightningCLI every fit goes through: `python -m cxr_ldm fit|validate|test|predict` and `training.fit`.

Subclass mode for model and data, so any config names its classes with `class_path`. Besides Lightning's own
checks: a config file that holds no mapping is named; `trainer.default_root_dir` must be no file (refused
before anything is built); a logger without `save_dir` writes under it; a `trainer.accelerator` this machine
has no device for (`gpu` on a laptop) is refused with the fix, and Lightning's own refusal of a `trainer:`
setting is a user error naming the section; the data's image size must suit the model's VAE; `--ckpt_path last`
with no checkpoint is an error naming the folders searched (`--ckpt_path auto` resumes when there is one and
starts afresh otherwise); a checkpoint given to resume from must exist and fit the model.

From Python, `args` is a `FitRequest` (config files and overrides as data): jsonargparse composes the files
in order (each with its `config:` base) and merges the overrides on top, as `--config A --config B --key
value` would, without a command line in between.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentError
from lightning import LightningDataModule, LightningModule
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI

from cxr_ldm.checkpoints import check_resumes, last_checkpoints, read_checkpoint
from cxr_ldm.data.mimic_datamodule import MimicCxrDataModule
from cxr_ldm.data.report_corpus_datamodule import ReportCorpusDataModule
from cxr_ldm.errors import ConfigError
from cxr_ldm.output_folders import check_output_folder
from cxr_ldm.training.config_yaml import check_config_file

LOGGER = logging.getLogger("cxr_ldm")

# Subclass mode knows the classes imported before the parser is built: `fit --help` lists these, and
# `--data MimicCxrDataModule` finds one by its name (`cxr_ldm.data` imports them only when asked for).
DATA_MODULES = (MimicCxrDataModule, ReportCorpusDataModule)

# Lightning's own ckpt_path words; anything else is a file path.
_CKPT_WORDS = {"last", "best", "hpc", "registry"}


@dataclass(frozen=True)
class FitRequest:
    """A fit as data: config files applied in order, then overrides (dotted keys or nested mappings)."""

    configs: Sequence[str | Path]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    complete: bool = True  # False: parse a part of a fit (a data-only file), without checking the rest


def nested(overrides: Mapping[str, Any]) -> dict:
    """`{"trainer.max_steps": 2}` -> `{"trainer": {"max_steps": 2}}`; later keys win, mappings merge, a
    `Path` is given as its string."""
    out: dict = {}
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if isinstance(value, os.PathLike):
            value = os.fspath(value)  # a path is a string to every config key
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            node[leaf] = {**node[leaf], **nested(value)}
        else:
            node[leaf] = value
    return out


def compose(parser, request: FitRequest):
    """The parsed config of `request`, as `--config A --config B --key v` gives it: jsonargparse's own config
    file action reads each file (its `config:` bases too) over the config so far, so a partial value
    (`model.init_args.x: v`) refines the class named before it; then the overrides are parsed over that, and
    every class's defaults filled in and checked."""
    config = parser.get_defaults()
    for path in request.configs:
        if not Path(path).is_file():
            raise ConfigError(f"config {path} does not exist")
        check_config_file(path)
        try:
            ActionConfigFile.apply_config(parser, config, "config", str(path))
        except (TypeError, ValueError, ArgumentError) as error:
            raise ConfigError(f"config {path}: {error}") from error
    try:
        if request.overrides:
            config = parser.parse_object(nested(request.overrides), namespace=config, _skip_required=True)
        files = config.pop("config", None)
        config.pop("__path__", None)
        # every init_args default in place, and checked
        config = parser.parse_object(config.as_dict(), _skip_required=not request.complete)
    except (TypeError, ValueError, ArgumentError) as error:
        shown = ", ".join(map(str, request.configs))
        raise ConfigError(f"configs [{shown}] with overrides {dict(request.overrides)}: {error}") from error
    config["config"] = files
    return config


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


def check_accelerator(accelerator) -> None:
    """`trainer.accelerator` must name a kind of device this machine has: `gpu` (the full configs' setting)
    on a machine without one is a ConfigError with the fix, before the model is built."""
    if not isinstance(accelerator, str) or accelerator in ("auto", "cpu"):
        return
    from lightning.pytorch.accelerators import AcceleratorRegistry

    names = sorted(AcceleratorRegistry.available_accelerators())
    here = [name for name in names if AcceleratorRegistry[name]["accelerator"].is_available()]
    if accelerator != "gpu" and accelerator not in names:
        raise ConfigError(
            f"trainer.accelerator {accelerator!r} is not an accelerator name; give auto, gpu or one of {names}"
        )
    wanted = ("cuda", "mps") if accelerator == "gpu" else (accelerator,)
    if not any(name in here for name in wanted):
        device = "GPU" if accelerator == "gpu" else f"{accelerator} device"
        raise ConfigError(
            f"trainer.accelerator {accelerator}: this machine has no {device} (available here: "
            f"{', '.join(here)}); give --trainer.accelerator cpu, or auto (a GPU when there is one, else the CPU)"
        )


def resolve_ckpt_path(trainer, ckpt_path, model=None):
    """`auto` -> `last` when a last checkpoint exists, else None; `last` without one and a missing file are
    errors naming what was searched; a checkpoint `model` cannot be restored from is refused by name."""
    if ckpt_path in ("last", "auto"):
        found, looked = last_checkpoints(trainer)
        where = ", ".join(looked) or "no folder (the run has no ModelCheckpoint callback with a fixed folder)"
        if not found and ckpt_path == "last":
            raise ConfigError(
                f"--ckpt_path last: no checkpoint to resume from in {where}; leave out --ckpt_path to "
                "start from scratch (or --ckpt_path auto: resume when there is one), or give a .ckpt path"
            )
        newest = max(found, key=os.path.getmtime) if found else None
        if newest is not None and model is not None:
            check_resumes(newest, model)
        if ckpt_path == "auto":
            LOGGER.warning(
                "--ckpt_path auto: %s",
                f"resuming from {newest}" if found else f"no checkpoint in {where}, starting afresh",
            )
            return "last" if found else None
    elif ckpt_path is not None and ckpt_path not in _CKPT_WORDS and "://" not in str(ckpt_path):
        if not Path(ckpt_path).expanduser().is_file():
            raise ConfigError(f"--ckpt_path {ckpt_path} does not exist (or is not a file)")
        if model is not None:
            check_resumes(Path(ckpt_path).expanduser(), model)
        else:
            read_checkpoint(
                Path(ckpt_path).expanduser(), "--ckpt_path", mmap=True
            )  # a cut-short copy: one line
    return ckpt_path


class CxrLdmCLI(LightningCLI):
    """LightningCLI with this project's defaults and checks (module docstring)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"trainer.plugins": [{"class_path": "cxr_ldm.checkpoints.AtomicCheckpointIO"}]})

    def parse_arguments(self, parser, args) -> None:
        if isinstance(args, FitRequest):
            self.config = compose(parser, args)
            return
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """The config names the model whole, so a checkpoint's saved hyperparameters are not parsed back into
        it: Lightning would read them as a bare LightningModule's (this project's model saves its arguments as
        a plain mapping, with no class path) and refuse every `--ckpt_path FILE`. The weights, optimizer and
        loop state are restored from the file as usual."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        loggers = config.get("trainer.logger")
        root = config.get("trainer.default_root_dir") or os.getcwd()
        check_output_folder(root, "trainer.default_root_dir", "the run (checkpoints, logs)")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init = getattr(logger, "init_args", None)
            if init is not None and "save_dir" in init and init.get("save_dir") is None:
                init["save_dir"] = str(root)
        check_accelerator(config.get("trainer.accelerator"))

    def instantiate_trainer(self, **kwargs):
        """Lightning's Trainer, its own refusal of the `trainer:` settings (MisconfigurationException, the
        error type Lightning gives a user's configuration) a ConfigError naming the section."""
        try:
            return super().instantiate_trainer(**kwargs)
        except MisconfigurationException as error:
            raise ConfigError(
                f"trainer: {error} (fix the trainer: section or its --trainer.* option)"
            ) from error

    def _check_run(self) -> None:
        check_image_size(self.model, self.datamodule)
        config = self.config_init[self.subcommand]
        config["ckpt_path"] = resolve_ckpt_path(self.trainer, config.get("ckpt_path"), self.model)

    before_fit = before_validate = before_test = before_predict = _check_run

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        # `--ckpt_path` (resume, validate, test) reads tensors and plain data only, whatever torch's default
        if "weights_only" in parser.get_defaults():
            parser.set_defaults(weights_only=True)
        return parser


class _ParseOnly(CxrLdmCLI):
    """Parses and checks a config; builds nothing, seeds nothing."""

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass

    def _add_configure_optimizers_method_to_model(self, subcommand) -> None:
        pass


def run_lightning_cli(args: list[str] | FitRequest, run: bool = True, instantiate: bool = True) -> CxrLdmCLI:
    """The CLI on `args`: a command line, the subcommand first (`["fit", "--config", "a.yaml"]`; `sys.argv`
    stays as it is), or with `run=False` a `FitRequest` or a command line without subcommand: model, data
    module and Trainer are built, nothing runs. With `instantiate=False` as well, only `cli.config` is made
    (parsed and checked)."""
    # Frozen components stay in eval mode on purpose; Lightning's notice about it is noise here.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # `python -m cxr_ldm fit ...` hands its own command line over as `args`; Lightning would warn about both.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within")
    return (CxrLdmCLI if instantiate or run else _ParseOnly)(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args if isinstance(args, FitRequest) else list(args),
        run=run,
        # from Python, a bad config raises (ConfigError) instead of exiting the process
        parser_kwargs={"exit_on_error": False} if isinstance(args, FitRequest) else None,
    )
