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

SAMPLERS = {
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
}


def make_sampler(name: str, noise_scheduler_config) -> SchedulerMixin:
    """An inference scheduler sharing the training betas and prediction type."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown scheduler '{name}'; choose one of {', '.join(SAMPLERS)}")
    cls, overrides = SAMPLERS[name]
    return cls.from_config(noise_scheduler_config, **overrides)
