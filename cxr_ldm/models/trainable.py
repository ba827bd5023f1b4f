"""Which components train, and how a frozen one is kept frozen.

The freezing decision lives here, as data: a component named in `trainable` trains with its own
optimizer settings; every other component is frozen once, at construction.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Any, TypeVar

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


# Parents before the parts nested in them: a nested part's own choice (train or freeze) wins.
TRAINABLE_COMPONENTS = (
    "unet",
    "text_encoder",
    "text_projection",
    "token_embeddings",
    "unet_lora",
    "text_encoder_lora",
)


def check_trainable_names(trainable: dict) -> None:
    """Refuse a `model.init_args.trainable` that names no component (nothing would train), or one not in
    `TRAINABLE_COMPONENTS`."""
    if not trainable:
        raise ConfigError(
            "model.init_args.trainable names no component, so nothing would train; name at least one, "
            f'e.g. {{"unet": {{"lr": 1e-4}}}}, choosing from {list(TRAINABLE_COMPONENTS)}'
        )
    unknown = sorted(set(trainable) - set(TRAINABLE_COMPONENTS))
    if unknown:
        hint = " (fine-tune the VAE with cxr_ldm.models.Autoencoder)" if "vae" in unknown else ""
        raise ConfigError(
            f"model.init_args.trainable names unknown component(s) {unknown}{hint}; "
            f"choose from {list(TRAINABLE_COMPONENTS)}"
        )


D = TypeVar("D")


def plain_data(value: Any) -> Any:
    """Dataclasses (at any depth of dicts and lists) as dicts: what a checkpoint's hyperparameters may hold."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_data(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: plain_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(item) for item in value]
    return value


def as_dataclass(cls: type[D], value: D | dict) -> D:
    """`value` as a `cls`: dicts (from a config or a checkpoint) are rebuilt, instances pass through."""
    return cls(**value) if isinstance(value, dict) else value


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
