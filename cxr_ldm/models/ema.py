"""Exponential moving average of the trained weights.

The shadows are plain tensors, not module buffers: DDP would otherwise broadcast every one of them from
rank zero at each forward (about 3.4 GB per micro-batch for Stable Diffusion's U-Net). Each rank updates
its own copy from the same all-reduced weights; checkpoints carry them through `state_dict()` /
`load_state_dict()` (see `cxr_ldm.checkpoints.write_model_entries`). The update count is a Python integer, so
an update never waits for the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from cxr_ldm.errors import ConfigError


class EmaWeights:
    """Shadow copies of named parameters; `swapped_in` puts them in place for sampling or export."""

    def __init__(self, named_parameters: dict[str, nn.Parameter], decay: float, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self._names = list(named_parameters)
        self._targets = list(named_parameters.values())
        self._shadows = [param.detach().clone().float() for param in self._targets]
        self.num_updates = 0

    def _follow_device(self) -> None:
        """Keep the shadows on their parameters' device (the model may have moved since the last call)."""
        if self._targets and self._shadows[0].device != self._targets[0].device:
            self._shadows = [s.to(p.device) for s, p in zip(self._shadows, self._targets, strict=True)]

    def shadows(self) -> list[torch.Tensor]:
        self._follow_device()
        return list(self._shadows)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        steps = self.num_updates
        return min(self.decay, (1 + steps) / (10 + steps))

    @torch.no_grad()
    def update(self) -> None:
        decay = self.current_decay()
        torch._foreach_lerp_(self.shadows(), [p.detach().float() for p in self._targets], 1.0 - decay)
        self.num_updates += 1

    def named_shadows(self) -> dict[str, torch.Tensor]:
        return dict(zip(self._names, self.shadows(), strict=True))

    def state_dict(self) -> dict[str, Any]:
        return {"shadows": self.named_shadows(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadows = state["shadows"]
        missing = sorted(set(self._names) - set(shadows))
        if missing:
            raise ConfigError(
                f"the checkpoint's EMA has no shadow for {missing[:3]} ({len(missing)} missing): it was trained "
                "with other trained parts; resume with the model.init_args.trainable (and lora, "
                "textual_inversion) it was trained with, or start a new run"
            )
        with torch.no_grad():
            for name, shadow in zip(self._names, self.shadows(), strict=True):
                shadow.copy_(shadows[name])
        self.num_updates = int(state["num_updates"])

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Temporarily load the EMA weights into the model; the raw weights come back afterwards."""
        backup = [p.detach().clone() for p in self._targets]
        with torch.no_grad():
            for param, shadow in zip(self._targets, self.shadows(), strict=True):
                param.copy_(shadow.to(param.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for param, saved in zip(self._targets, backup, strict=True):
                    param.copy_(saved)


@contextmanager
def ema_applied(ema: EmaWeights | None, enabled: bool = True) -> Iterator[None]:
    """The EMA weights in place inside the block, when there is an EMA and `enabled`."""
    if ema is None or not enabled:
        yield
        return
    with ema.swapped_in():
        yield
