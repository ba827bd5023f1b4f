"""Frozen components stored in the training dtype under mixed precision, cast once per fit.

Under `bf16-mixed` / `16-mixed`, autocast re-casts every frozen weight (VAE, frozen text encoder, the
frozen U-Net under LoRA) to the low dtype on every forward. Casting those weights once at fit start does
that work once and halves their memory, as diffusers' training scripts do (`weight_dtype`). Trained
parameters (LoRA adapters included) stay float32.

The float32 values come back when they are needed: checkpoints saved during the fit carry them (not the
rounded copies), sampling during the fit (`originals()`) uses them, and they are put back when the fit
ends, so export and later runs see the original weights. A component loaded from a pretrained source (hub
id or directory) is read again from that source then (`Reload`): no rank keeps a float32 copy of it in
host memory during the fit, and it is left out of checkpoints anyway. Only a frozen component built from a
config (random weights, as in tests), which nothing could read again, keeps a float32 copy on the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from lightning import Callback
from torch import nn

from cxr_ldm.models.components import read_pretrained_component

LOW_PRECISION = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def training_dtype(precision: str | int | None) -> torch.dtype | None:
    """The low dtype of a mixed precision setting, or None (full precision, or `*-true`)."""
    return LOW_PRECISION.get(str(precision))


@dataclass
class Reload:
    """A component that can be read again from its pretrained source: `read()` gives its tensors in their
    original dtype, in the order of `tensors` (the model's own tensors of that component, as loaded)."""

    read: Callable[[], list[torch.Tensor]]
    tensors: list[torch.Tensor | None]


def frozen_reloads(spec, state: dict[str, torch.Tensor], loaded: dict, frozen: set[str]) -> list[Reload]:
    """How a fit in the low dtype reads each frozen pretrained component again from its source (`spec`, the
    model's components part): the model's own tensors of it (`state`, kept with their variables), in the order
    the source gives them (`loaded[name] = (_, tensors)`), None for one the model dropped."""
    present = {id(tensor) for tensor in state.values()}
    return [
        Reload(
            partial(read_pretrained_component, spec, name), [t if id(t) in present else None for t in tensors]
        )
        for name, (_, tensors) in loaded.items()
        if name in frozen
    ]


class FrozenDtype:
    """Casts the frozen floating parameters of some components, and restores them."""

    def __init__(self) -> None:
        self._stash: dict[str, tuple[nn.Parameter, torch.Tensor]] = {}  # float32 copies kept on the host
        self._reloads: list[
            tuple[Reload, dict[int, torch.dtype]]
        ] = []  # (source, {position: dtype cast from})
        self._low: dict[int, torch.dtype] = {}  # id(param) -> the dtype it was cast to

    @property
    def active(self) -> bool:
        return bool(self._stash or self._reloads)

    def names(self) -> list[str]:
        return list(self._stash)

    def host_copy_bytes(self) -> int:
        """Bytes of the float32 copies kept on the host during the fit."""
        return sum(original.nbytes for _, original in self._stash.values())

    @torch.no_grad()
    def cast(
        self, root: nn.Module, components: list[nn.Module], dtype: torch.dtype, reloads: list[Reload] = ()
    ) -> None:
        """Cast every parameter of `components` that does not require grad to `dtype`.

        `root` names the parameters as its `state_dict` does, so checkpoints can be mended. A parameter
        among a `Reload`'s tensors keeps no host copy: that source is read again when the values are needed.
        """
        if self.active:
            return
        wanted = {id(param) for module in components for param in module.parameters()}
        position = {
            id(t): (i, k)
            for i, reload in enumerate(reloads)
            for k, t in enumerate(reload.tensors)
            if t is not None
        }
        cast_from: list[dict[int, torch.dtype]] = [{} for _ in reloads]
        for name, param in root.named_parameters(remove_duplicate=True):
            if id(param) not in wanted or param.requires_grad or not param.is_floating_point():
                continue
            if param.dtype == dtype:
                continue
            if id(param) in position:
                i, k = position[id(param)]
                cast_from[i][k] = param.dtype
            else:
                self._stash[name] = (param, param.detach().to("cpu", copy=True))
            self._low[id(param)] = dtype
            param.data = param.data.to(dtype)
        self._reloads = [(reload, cast) for reload, cast in zip(reloads, cast_from, strict=True) if cast]

    @torch.no_grad()
    def _put_back_originals(self) -> None:
        for param, original in self._stash.values():
            param.data = original.to(param.device)
        for reload, cast in self._reloads:
            fresh = reload.read()
            for k, original_dtype in cast.items():
                param, value = reload.tensors[k], fresh[k]
                if value.shape != param.shape:
                    raise RuntimeError(
                        f"the pretrained source read again gave a tensor of shape {tuple(value.shape)} where "
                        f"the model has {tuple(param.shape)}; was the source changed during the fit?"
                    )
                param.data = value.to(param.device, original_dtype)

    def _params(self) -> list[torch.Tensor]:
        cast = [param for param, _ in self._stash.values()]
        return cast + [reload.tensors[k] for reload, positions in self._reloads for k in positions]

    @torch.no_grad()
    def restore(self) -> None:
        """Put the float32 (original dtype) values back."""
        self._put_back_originals()
        self._stash.clear()
        self._reloads = []
        self._low.clear()

    @contextmanager
    def originals(self) -> Iterator[None]:
        """The original values inside the block (sampling for humans), the cast ones again after it."""
        if not self.active:
            yield
            return
        self._put_back_originals()
        try:
            yield
        finally:
            with torch.no_grad():
                for param in self._params():
                    param.data = param.data.to(self._low[id(param)])

    def mend_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Replace the cast entries of a `state_dict` (as saved) by their original values. (Components
        read again from a source are left out of checkpoints before this.)"""
        for name, (_, original) in self._stash.items():
            if name in state_dict:
                state_dict[name] = original.clone()


class TeardownOnException(Callback):
    """A fit that raises (non-finite loss, interrupt, out of memory) never calls the module's `teardown`, and
    Lightning gives `on_exception` to callbacks only: this one gives the frozen weights their original dtype
    back and closes the text cache, so the model object is whole for whoever caught the error."""

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        pl_module.teardown("fit")
