"""Which components train, and how a frozen one is kept frozen.

The freezing decision lives here, as data: a component named in `trainable` trains with its own
optimizer settings; every other component is frozen once, at construction.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

from torch import nn

from cxr_ldm.errors import ConfigError


@dataclass
class Trainable:
    """Optimizer settings of one trained component."""

    lr: float = 5e-5
    weight_decay: float = 1e-2

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
                raise ConfigError(
                    f"model.init_args.trainable: {name} must be a finite number >= 0, got {value!r}"
                )


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return self


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients, and `train()` made a no-op so Lightning's `model.train()` cannot flip it."""
    module.eval()
    module.requires_grad_(False)
    module.train = types.MethodType(_stay_in_eval, module)
    return module


def is_frozen(module: nn.Module) -> bool:
    return not module.training and not any(p.requires_grad for p in module.parameters())
