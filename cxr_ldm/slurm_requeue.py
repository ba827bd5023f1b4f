"""In a SLURM job, one mechanism requeues a unit: submitit's (experiments/unit_job.py). Lightning's
`SLURMEnvironment`, which a Trainer takes up by itself inside a SLURM job, would requeue the job as well: a
Trainer that a unit builds directly (not through `fit`, whose overrides say so) takes these plugins."""

from __future__ import annotations

import os


def trainer_plugins() -> list:
    """`[SLURMEnvironment(auto_requeue=False)]` inside a SLURM job, else none."""
    if "SLURM_JOB_ID" not in os.environ:
        return []
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


__all__ = ["trainer_plugins"]
