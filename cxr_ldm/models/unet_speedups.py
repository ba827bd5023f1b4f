"""Execution speed-ups of the U-Net that leave its weights and `state_dict` names unchanged.

- channels_last: convolution weights (and so activations) in NHWC layout, which Tensor Cores prefer.
- compile: `torch.compile` of the U-Net's forward (`nn.Module.compile`, in place), so checkpoints, EMA,
  export and `state_dict` keys see the same module (no `_orig_mod.` prefix).
"""

from __future__ import annotations

import torch
from torch import nn


def channels_last_applies(option: bool | None, device: torch.device) -> bool:
    """`None` (the default) means on for CUDA only; True or False force it."""
    return torch.device(device).type == "cuda" if option is None else bool(option)


def use_channels_last(module: nn.Module) -> nn.Module:
    """Convert the 4-D parameters and buffers in place (parameter objects are kept)."""
    return module.to(memory_format=torch.channels_last)


def compile_forward(module: nn.Module, **options) -> nn.Module:
    """Compile the module's forward in place; its parameters and `state_dict` keys are unchanged."""
    if not hasattr(module, "compile"):
        raise RuntimeError(f"torch {torch.__version__} has no nn.Module.compile; upgrade to torch>=2.2")
    module.compile(**options)
    return module
