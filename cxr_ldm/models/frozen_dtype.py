"""Frozen components stored in the training dtype under mixed precision, cast once per fit.

Under `bf16-mixed` / `16-mixed`, autocast re-casts every frozen weight (VAE, frozen text encoder, the
frozen U-Net under LoRA) to the low dtype on every forward. Casting those weights once at fit start does
that work once and halves their memory, as diffusers' training scripts do (`weight_dtype`). Trained
parameters (LoRA adapters included) stay float32.

The float32 values are kept on the host: checkpoints saved during the fit carry them (not the rounded
copies), sampling during the fit (`originals()`) uses them, and they are put back when the fit ends, so
export and later runs see the original weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

LOW_PRECISION = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def training_dtype(precision: str | int | None) -> torch.dtype | None:
    """The low dtype of a mixed precision setting, or None (full precision, or `*-true`)."""
    return LOW_PRECISION.get(str(precision))


class FrozenDtype:
    """Casts the frozen floating parameters of some components, and restores them."""

    def __init__(self) -> None:
        self._stash: dict[str, tuple[nn.Parameter, torch.Tensor]] = {}

    @property
    def active(self) -> bool:
        return bool(self._stash)

    def names(self) -> list[str]:
        return list(self._stash)

    @torch.no_grad()
    def cast(self, root: nn.Module, components: list[nn.Module], dtype: torch.dtype) -> None:
        """Cast every parameter of `components` that does not require grad to `dtype`.

        `root` names the parameters as its `state_dict` does, so checkpoints can be mended.
        """
        if self._stash:
            return
        wanted = {id(param) for module in components for param in module.parameters()}
        for name, param in root.named_parameters(remove_duplicate=True):
            if id(param) not in wanted or param.requires_grad or not param.is_floating_point():
                continue
            if param.dtype == dtype:
                continue
            self._stash[name] = (param, param.detach().to("cpu", copy=True))
            param.data = param.data.to(dtype)

    @torch.no_grad()
    def restore(self) -> None:
        """Put the float32 (original dtype) values back."""
        for param, original in self._stash.values():
            param.data = original.to(param.device)
        self._stash.clear()

    @contextmanager
    def originals(self) -> Iterator[None]:
        """The original values inside the block (sampling for humans), the cast ones again after it."""
        if not self._stash:
            yield
            return
        dtypes = {name: param.dtype for name, (param, _) in self._stash.items()}
        with torch.no_grad():
            for param, original in self._stash.values():
                param.data = original.to(param.device)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, (param, _) in self._stash.items():
                    param.data = param.data.to(dtypes[name])

    def mend_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Replace the cast entries of a `state_dict` (as saved) by their original values."""
        for name, (_, original) in self._stash.items():
            if name in state_dict:
                state_dict[name] = original.clone()
