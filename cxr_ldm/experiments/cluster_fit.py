"""What a fit inside a SLURM job (a unit submitted by the submitit launcher) adds to its trainer: Lightning's
SLURM environment without its own requeue (submitit requeues a preempted or timed-out job, once; the fit
resumes from its last checkpoint through `ckpt_path="auto"`), and, when the job has several tasks, DDP over
them: `trainer.num_nodes` = the job's nodes, `trainer.devices` = its tasks per node (one task per GPU)."""

from __future__ import annotations

import os

SLURM_ENVIRONMENT = "lightning.pytorch.plugins.environments.SLURMEnvironment"


def cluster_fit_overrides() -> dict:
    if "SLURM_JOB_ID" not in os.environ:
        return {}
    overrides: dict = {
        "trainer.plugins": [{"class_path": SLURM_ENVIRONMENT, "init_args": {"auto_requeue": False}}]
    }
    tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if tasks > 1:
        nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", "1")))
        overrides["trainer.num_nodes"] = nodes
        overrides["trainer.devices"] = tasks // nodes
    return overrides


def leave_fit_group() -> None:
    """After a fit over several tasks: the fit's process group goes, so that task 0 evaluates alone (the
    generation's barrier waited on the group for tasks that had left, and failed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_first_task() -> bool:
    """True outside SLURM and on the job's task 0: the one that evaluates after a fit on several tasks."""
    return int(os.environ.get("SLURM_PROCID", "0")) == 0


__all__ = ["cluster_fit_overrides", "is_first_task", "leave_fit_group"]
