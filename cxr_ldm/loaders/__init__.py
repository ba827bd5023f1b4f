"""Loaders every layer shares: a data module from a config file, a LightningModule from a checkpoint path."""

from cxr_ldm.loaders.checkpoint import load_checkpoint
from cxr_ldm.loaders.datamodule import load_datamodule

__all__ = ["load_checkpoint", "load_datamodule"]
