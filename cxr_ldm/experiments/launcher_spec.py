"""The `launcher:` section of an experiment config: where its units run.

`kind: in_process` (the default) runs every unit one after another in the command's own process; a section
that sets a job's settings (`cluster`, `partition`, ...) without a `kind` is refused, not run in this process.
`kind: submitit` makes each pending unit one job of a submitit executor: `cluster: local` (processes on this
machine, `array_parallelism` at once) or `cluster: slurm` (sbatch; the independent (arm, seed) units as one
job array). A cluster profile is one YAML file holding this section (configs/clusters/), composed in with a
second `--config`. The launcher never changes what a unit computes: results are the same whichever runs it.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any, Literal

from cxr_ldm.errors import ConfigError


@dataclass
class LauncherSpec:
    """Where the units of an experiment run.

    Args:
        kind: `in_process` (one after another in this process) or `submitit` (one job per unit); default
            in_process, which must be stated when any other key of the section is given.
        cluster: submitit's executor: `local` (processes on this machine) or `slurm`.
        folder: the jobs' submission files and logs; default `<out>/jobs`.
        partition / account: SLURM partition and account (null: the cluster's default).
        nodes / tasks_per_node / gpus_per_node / cpus_per_task / mem_gb: the size of each unit's job. A unit
            that trains on several GPUs or nodes runs Lightning DDP inside its job: tasks_per_node = GPUs
            per node, one task per GPU (the fit's trainer.devices and trainer.num_nodes follow them).
        timeout_min: each job's time limit; a job that reaches it is requeued and resumes from its last
            checkpoint (submitit's checkpointing), up to `max_requeues` times.
        array_parallelism: how many jobs of one array (or local processes) run at once.
        slurm: further executor options, each without its `slurm_` prefix (e.g. `{qos: high, constraint: a100,
            additional_parameters: {reservation: x}}`), passed to submitit as `slurm_<key>`.
        poll_seconds: how often the driver looks at its jobs while it waits.
        wait: the driver waits for its jobs and goes on with the units that need them, then builds the report;
            `false`: it submits the units whose inputs are ready and returns (run the command again to go on).
        max_requeues: preemptions and timeouts a job survives.
    """

    kind: Literal["in_process", "submitit"] | None = None
    cluster: Literal["local", "slurm"] = "local"
    folder: str | None = None
    partition: str | None = None
    account: str | None = None
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 60
    array_parallelism: int = 2
    slurm: dict[str, Any] = field(default_factory=dict)
    poll_seconds: float = 5.0
    wait: bool = True
    max_requeues: int = 3

    def validate(self) -> LauncherSpec:
        """This section checked, with its `kind` stated (raise ConfigError naming the key and the fix)."""
        if self.kind is None:
            given = [
                f"launcher.{f.name}"
                for f in fields(self)
                if f.name != "kind" and getattr(self, f.name) != _default(f)
            ]
            if given:
                raise ConfigError(
                    f"{', '.join(given)} given without launcher.kind: set launcher.kind: submitit to run each unit "
                    f"as a job (cluster: {self.cluster}), or launcher.kind: in_process to run them one after "
                    "another in this process"
                )
            return replace(self, kind="in_process").validate()
        for key in ("nodes", "tasks_per_node", "timeout_min", "array_parallelism"):
            if getattr(self, key) < 1:
                raise ConfigError(f"launcher.{key} must be at least 1, got {getattr(self, key)}")
        if self.cluster == "local" and self.nodes > 1:
            raise ConfigError(
                f"launcher.nodes {self.nodes}: the local executor runs on this machine only; "
                "set launcher.cluster: slurm for several nodes"
            )
        prefixed = [key for key in self.slurm if key.startswith("slurm_")]
        if prefixed:
            raise ConfigError(f"launcher.slurm: write the keys without their slurm_ prefix, got {prefixed}")
        return self

    def executor_parameters(self) -> dict[str, Any]:
        """submitit's `update_parameters` of every unit's job."""
        params: dict[str, Any] = {
            "nodes": self.nodes,
            "tasks_per_node": self.tasks_per_node,
            "gpus_per_node": self.gpus_per_node,
            "timeout_min": self.timeout_min,
            "slurm_array_parallelism": self.array_parallelism,
        }
        if self.cpus_per_task is not None:
            params["cpus_per_task"] = self.cpus_per_task
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.partition is not None:
            params["slurm_partition"] = self.partition
        if self.account is not None:
            params["slurm_account"] = self.account
        params.update({f"slurm_{key}": value for key, value in self.slurm.items()})
        return params


def _default(field_: Field) -> Any:
    return field_.default_factory() if field_.default_factory is not MISSING else field_.default


__all__ = ["LauncherSpec"]
