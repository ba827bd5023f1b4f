"""LoRA adapters (through `peft`) on the U-Net or the text encoder, and merging them for export.

The adapters are injected into the component in place (`inject_adapter_in_model`); the base weights stay
frozen and only the `lora_A`/`lora_B` layers train. `merged_copy` folds the adapters into the base weights
of a copy, giving a module with the original parameter names that plain diffusers/transformers load.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from cxr_ldm.errors import ConfigError

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CLIP_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
LORA_TARGETS = {"unet": UNET_TARGETS, "text_encoder": CLIP_TARGETS}


@dataclass
class LoraSpec:
    """Rank, scale (`alpha / rank`) and target module names of one component's adapters."""

    rank: int = 4
    alpha: float = 4.0
    dropout: float = 0.0
    target_modules: list[str] | None = None


def add_lora(module: nn.Module, spec: LoraSpec, component: str) -> nn.ModuleList:
    """Inject adapters into `module`; return the adapter sub-modules (`lora_A`, `lora_B`) as a list."""
    key = f"model.init_args.lora.{component}"
    if spec.rank < 1:
        raise ConfigError(f"{key}.rank must be >= 1, got {spec.rank}")
    targets = list(spec.target_modules or LORA_TARGETS[component])
    config = LoraConfig(
        r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets, bias="none"
    )
    try:
        inject_adapter_in_model(config, module)
    except ValueError as error:
        raise ConfigError(f"{key}.target_modules {targets}: {error}") from error
    adapters = [
        layer
        for tuner in module.modules()
        if isinstance(tuner, BaseTunerLayer)
        for layer in (tuner.lora_A, tuner.lora_B)
    ]
    if not adapters:
        raise ConfigError(f"{key}.target_modules {targets} matched no layer")
    return nn.ModuleList(adapters)


def has_lora(module: nn.Module) -> bool:
    return any(isinstance(m, BaseTunerLayer) for m in module.modules())


def merged_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` with every LoRA adapter merged into its base layer and the wrapper removed."""
    if not has_lora(module):
        return module
    merged = copy.deepcopy(module)
    wrappers = [(name, m) for name, m in merged.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, wrapper in wrappers:
        wrapper.merge()
        parent_name, _, child = name.rpartition(".")
        parent = merged.get_submodule(parent_name) if parent_name else merged
        setattr(parent, child, wrapper.get_base_layer())
    return merged
