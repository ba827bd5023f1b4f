"""The LightningCLI behind `python -m cxr_ldm fit|validate|test|predict`."""

from __future__ import annotations

import sys
import warnings

from lightning import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

from cxr_ldm.checkpoint_io import AtomicCheckpointIO


class CxrLdmCLI(LightningCLI):
    """Subclass mode for model and data, so any config names its classes with `class_path`."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"trainer.plugins": [{"class_path": "cxr_ldm.checkpoint_io.AtomicCheckpointIO"}]})

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        # `--ckpt_path` (resume, validate, test) reads tensors and plain data only, whatever torch's default
        if "weights_only" in parser.get_defaults():
            parser.set_defaults(weights_only=True)
        return parser


def run_lightning_cli(args: list[str]) -> CxrLdmCLI:
    # Frozen components stay in eval mode on purpose; Lightning's notice about it is noise here.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    sys.argv = [sys.argv[0], *args]
    return CxrLdmCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
    )


__all__ = ["AtomicCheckpointIO", "CxrLdmCLI", "run_lightning_cli"]
