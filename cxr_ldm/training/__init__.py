"""Training from configs as data: the LightningCLI, `fit`, and the data module a config describes."""

from cxr_ldm.training.datamodule import load_datamodule, load_datamodule_for
from cxr_ldm.training.fit import build_run, fit, fit_command_line
from cxr_ldm.training.lightning_cli import CxrLdmCLI, FitRequest, run_lightning_cli

__all__ = [
    "CxrLdmCLI",
    "FitRequest",
    "build_run",
    "fit",
    "fit_command_line",
    "load_datamodule",
    "load_datamodule_for",
    "run_lightning_cli",
]
