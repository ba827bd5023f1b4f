"""The optimizer of a `LatentDiffusion` fit: AdamW with one parameter group per trained component (its own
learning rate and weight decay), stepped by a diffusers learning-rate schedule once per optimizer step; and
`scheduled_adamw`, the single-group AdamW and schedule of the pretraining modules (`Autoencoder`,
`TextLanguageModel`)."""

from __future__ import annotations

import torch
from diffusers.optimization import get_scheduler
from torch import nn

from cxr_ldm.errors import ConfigError
from cxr_ldm.models.diffusion_parts import Optimization
from cxr_ldm.models.fused_adamw import make_adamw
from cxr_ldm.models.trainable import Trainable


def build_optimizer(
    trainable: dict[str, Trainable],
    owned: dict[str, dict[str, nn.Parameter]],
    optimization: Optimization,
    total_steps: float | None,
) -> dict:
    """Lightning's `configure_optimizers` answer for the `trainable` components, given each component's own
    parameters (`owned`, see `LatentDiffusion.owned_parameters`) and the fit's step budget (None or inf: a
    schedule without one)."""
    groups = []
    for name, settings in trainable.items():
        params = [p for p in owned[name].values() if p.requires_grad]
        groups.append(
            {"params": params, "lr": settings.lr, "weight_decay": settings.weight_decay, "name": name}
        )
    optimizer = make_adamw(groups, fused=optimization.fused_adamw)
    scheduler = get_scheduler(
        optimization.lr_scheduler,
        optimizer,
        num_warmup_steps=optimization.lr_warmup_steps,
        num_training_steps=int(total_steps) if total_steps and total_steps != float("inf") else None,
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def scheduled_adamw(
    module, params, lr: float, weight_decay: float, lr_scheduler: str, lr_warmup_steps: int
) -> dict:
    """Lightning's `configure_optimizers` answer for one AdamW group over `params`, stepped by the diffusers
    schedule `lr_scheduler` over `module`'s trainer's step budget; a name diffusers does not know, or a
    decaying schedule without a budget, is a ConfigError naming `model.init_args.lr_scheduler`."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = module.trainer.estimated_stepping_batches if module._trainer is not None else None
    try:
        scheduler = get_scheduler(
            lr_scheduler,
            optimizer,
            num_warmup_steps=lr_warmup_steps,
            num_training_steps=int(total) if total and total != float("inf") else None,
        )
    except ValueError as error:  # an unknown name, or a decaying schedule without a step budget
        raise ConfigError(
            f"model.init_args.lr_scheduler {lr_scheduler!r}: {error} (a decaying schedule needs "
            "trainer.max_steps or trainer.max_epochs)"
        ) from error
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
