"""Exponential moving average of the trained weights, kept as buffers so checkpoints carry it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EmaWeights(nn.Module):
    """Shadow copies of named parameters; `swapped_in` puts them in place for sampling or export."""

    def __init__(self, named_parameters: dict[str, nn.Parameter], decay: float, warmup: bool = True) -> None:
        super().__init__()
        self.decay = decay
        self.warmup = warmup
        self._names = list(named_parameters)
        self._targets = list(named_parameters.values())
        for index, param in enumerate(self._targets):
            self.register_buffer(f"shadow_{index}", param.detach().clone().float())
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def shadows(self) -> list[torch.Tensor]:
        return [getattr(self, f"shadow_{index}") for index in range(len(self._targets))]

    def current_decay(self) -> float:
        steps = int(self.num_updates.item())
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + steps) / (10 + steps))

    @torch.no_grad()
    def update(self) -> None:
        decay = self.current_decay()
        shadows = self.shadows()
        torch._foreach_lerp_(shadows, [p.detach().float() for p in self._targets], 1.0 - decay)
        self.num_updates += 1

    def named_shadows(self) -> dict[str, torch.Tensor]:
        return dict(zip(self._names, self.shadows(), strict=True))

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
