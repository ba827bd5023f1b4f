"""Inference schedulers by name, all derived from the training noise schedule."""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from cxr_ldm.errors import ConfigError
from cxr_ldm.sampler_names import SAMPLER_NAMES

SAMPLERS = {
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    # DDIM's last step as it samples from a training schedule (which has no such key); stated, so that an
    # exported folder, whose scheduler config is PNDM's (False), samples as its checkpoint does
    "ddim": (DDIMScheduler, {"set_alpha_to_one": True}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
}


assert tuple(SAMPLERS) == SAMPLER_NAMES, "cxr_ldm/sampler_names.py lists the samplers built here"


def make_sampler(name: str, noise_scheduler_config) -> SchedulerMixin:
    """An inference scheduler sharing the training betas and prediction type."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown scheduler '{name}'; choose one of {', '.join(SAMPLERS)}")
    cls, overrides = SAMPLERS[name]
    # Every value of the training config is passed as given: diffusers would otherwise replace the ones it
    # marks as defaults (`_use_default_values`) with this class's own defaults.
    config = {k: v for k, v in dict(noise_scheduler_config).items() if k != "_use_default_values"}
    return cls.from_config(config, **overrides)
