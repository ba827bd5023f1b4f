"""The submitit launcher: each pending unit of an experiment one job (experiments/unit_job.py), on this
machine (`cluster: local`) or through SLURM (`cluster: slurm`).

The driver goes through the plan in waves (experiments/plan.py `waves`: references, then every (arm, seed)
unit as one job array, then the follow-ups): it submits a wave's missing units, waits for them, and goes on
when they are all done. A unit that fails is reported with its log, arm and seed after the rest of its wave
finished, and the units that need it are not submitted. The report is built by the driver, in its own
process, when every unit is done. Running the same command again submits only what is missing: a unit done
(its `done.json` holds these inputs' key) is kept, a unit whose job is still alive (squeue lists it, or its
local process runs) is waited for, never submitted twice.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.followup import Followup
from cxr_ldm.experiments.launcher_spec import LauncherSpec
from cxr_ldm.experiments.plan import REPORT, Unit, plan_units, waves
from cxr_ldm.experiments.spec import ExperimentConfig
from cxr_ldm.experiments.unit_inputs import UnitInputs, earlier_result, result_kept
from cxr_ldm.experiments.unit_job import UnitJob
from cxr_ldm.experiments.unit_records import (
    DONE,
    JOB,
    NO_SQUEUE,
    UnitState,
    clear_run,
    job_alive,
    live_job,
    process_start,
    unit_folder,
    unit_key,
    unit_state,
    write_record,
)


@dataclass
class LaunchOutcome:
    """What the driver did: units it submitted, units it found running and waited for, the state of every
    unit when it returned, and the report's path when it built it."""

    submitted: list[str] = field(default_factory=list)
    attached: list[str] = field(default_factory=list)
    states: list[UnitState] = field(default_factory=list)
    report: Path | None = None

    @property
    def failed(self) -> list[UnitState]:
        return [state for state in self.states if state.state == "failed"]


class SubmititLauncher:
    def __init__(
        self, config: ExperimentConfig, followups: Sequence[Followup], launcher: LauncherSpec, stream=None
    ) -> None:
        self.launcher = launcher.validate()
        self.config, self.followups = config.resolved(self.launcher), tuple(followups)
        self.stream = stream or sys.stderr
        self.units = plan_units(self.config, followups)
        self.live: dict[str, object] = {}  # unit -> submitit Job submitted by this driver
        self.inputs = UnitInputs(self.config)  # the units' inputs, threads resolved (pretrained digest once)

    def line(self, text: str) -> None:
        print(f"[{self.config.name}] {text}", file=self.stream, flush=True)

    def key(self, unit: Unit) -> str:
        return unit_key(self.config, self.followups, unit.name, self.inputs.unit_files(unit.name))

    def state(self, unit: Unit) -> UnitState:
        """The unit's state from its records, or done by the result an earlier run left from the same inputs
        (a folder written before the launcher existed): never submitted again, as the engine would reuse it."""
        folder = unit_folder(self.config, unit.name)
        state = unit_state(folder, unit.name, self.key(unit), self.live.get(unit.name),
                           earlier=lambda: earlier_result(self.config, unit.name, self.inputs),
                           kept=result_kept(self.config, unit))  # fmt: skip
        if state.state in ("pending", "failed") and (job := live_job(folder, self.live.get(unit.name))):
            # a job of other inputs still at work in the unit's folder: waited for, never run beside
            return UnitState(unit.name, "running", job["job_id"], None, job.get("log", ""),
                             f"{job['state']}, a job of other inputs: wait for it or cancel it",
                             other_inputs=True)  # fmt: skip
        return state

    def states(self) -> list[UnitState]:
        return [self.state(unit) for unit in self.units]

    def executor(self, one_task: bool = False):
        """submitit's executor for the units' jobs; `one_task`: a job of one task on one node, for a unit
        that does not train over several tasks (every unit but an (arm, seed) fit)."""
        import submitit

        folder = Path(self.launcher.folder or Path(self.config.out) / "jobs")
        executor = submitit.AutoExecutor(
            folder=folder,
            cluster=self.launcher.cluster,
            slurm_max_num_timeout=self.launcher.max_requeues,
        )
        parameters = self.launcher.executor_parameters()
        if one_task:
            parameters.update(nodes=1, tasks_per_node=1)
        executor.update_parameters(name=self.config.name[:40], **parameters)
        return executor

    def submit(self, units: Sequence[Unit]) -> None:
        """`units` as jobs (the (arm, seed) units, which may train over several tasks, as one array on SLURM;
        the others each a job of one task: every task of a job would run its unit), each recorded in its unit
        folder before this returns."""
        arms = [unit for unit in units if unit.arm is not None]
        for group in (arms, [unit for unit in units if unit.arm is None]):
            if group:
                self._submit(group, one_task=group is not arms)

    def _submit(self, units: Sequence[Unit], one_task: bool) -> None:
        import submitit

        executor = self.executor(one_task)
        calls = [UnitJob(self.config, self.followups, unit.name) for unit in units]
        for unit in units:  # before the jobs exist: a job that starts at once writes its own start
            clear_run(unit_folder(self.config, unit.name))
        try:
            if len(calls) == 1:
                jobs = [executor.submit(calls[0])]
            else:
                with executor.batch():
                    jobs = [executor.submit(call) for call in calls]
        except submitit.core.utils.FailedJobError as error:
            told = str(error).splitlines()
            lines = [line for line in told if "error" in line.lower()] or told
            raise ConfigError(
                f"launcher: the cluster refused the jobs of {', '.join(u.label for u in units)} "
                f"({lines[-1].strip() if lines else error.__class__.__name__}); check launcher.partition "
                f"({self.launcher.partition}), launcher.account ({self.launcher.account}) and launcher.slurm "
                f"({self.launcher.slurm})"
            ) from None
        for unit, job in zip(units, jobs, strict=True):
            record = {"key": self.key(unit), "job_id": str(job.job_id), "cluster": self.launcher.cluster,
                      "log": str(job.paths.stderr), "stdout": str(job.paths.stdout), "submitted": time.time()}  # fmt: skip
            # a local job's pid, told apart from a later process given the same one
            if self.launcher.cluster == "local":
                record.update(host=os.uname().nodename, process_start=process_start(int(job.job_id)))
            write_record(unit_folder(self.config, unit.name), JOB, record)
            self.live[unit.name] = job
            self.line(f"{unit.label}: submitted as job {job.job_id} (log {job.paths.stderr})")

    def run_wave(self, wave: Sequence[Unit], wait: bool) -> list[UnitState]:
        """Submit the wave's pending and failed units (on this machine at most `array_parallelism` processes
        at once; on SLURM all at once, the array's parallelism being SLURM's) and, when `wait`, wait until
        none runs; returns the wave's states. A unit submitted here, or run by another command's job of its
        inputs, that fails is not submitted again by this driver: it is reported, and a later command submits
        it again. A unit whose folder a job of other inputs holds is submitted once that job has ended."""
        tried: set[str] = set()
        seen: set[str] = set()
        while True:
            states = {unit.name: self.state(unit) for unit in wave}
            running = [unit for unit in wave if states[unit.name].state == "running"]
            for unit in running:
                state = states[unit.name]
                if state.detail.startswith(NO_SQUEUE):
                    raise ConfigError(
                        f"{unit.label}: its job {state.job_id} is a SLURM job and this machine has no squeue to "
                        "say whether it still runs: run from a machine of the cluster, or, when the job has ended "
                        f"(a folder copied from the cluster), delete {unit_folder(self.config, unit.name) / JOB}"
                    )
                if unit.name not in self.live and unit.name not in seen:
                    seen.add(unit.name)
                    if not state.other_inputs:  # this unit's own job: if it fails, it is reported here
                        tried.add(unit.name)
                    self.line(f"{unit.label}: job {state.job_id} is still running ({state.detail})"
                              + ("; waiting for it" if wait else ""))  # fmt: skip
                    self.outcome.attached.append(unit.name)
            todo = [u for u in wave if states[u.name].state in ("pending", "failed") and u.name not in tried]
            local = self.launcher.cluster == "local"
            room = max(self.launcher.array_parallelism - len(running), 0) if local else len(todo)
            batch = todo[:room]
            self.submit(batch)
            tried.update(unit.name for unit in batch)
            self.outcome.submitted += [unit.name for unit in batch]
            if not wait or (not running and not batch):
                if wait:
                    self.wait_for_exit(wave)
                return [self.state(unit) for unit in wave]
            time.sleep(self.launcher.poll_seconds)

    def wait_for_exit(self, wave: Sequence[Unit]) -> None:
        """A job records its unit done before its process ends: wait for the processes of the wave's jobs
        that this launcher submitted, so that none still runs when it returns (a later launch or `--status`
        would take a job still exiting for one at work). A SLURM job is looked up in squeue (submitit asks
        sacct, which a cluster without accounting cannot answer), a local one is this process's child."""
        cluster = self.launcher.cluster
        jobs = [(self.live[unit.name], {"cluster": cluster, "job_id": str(self.live[unit.name].job_id)})
                for unit in wave if unit.name in self.live]  # fmt: skip
        while any(job_alive(record, job) is not None for job, record in jobs):
            time.sleep(self.launcher.poll_seconds)

    def launch(self) -> LaunchOutcome:
        from cxr_ldm.experiments.engine import run_unit

        self.config.validate(self.followups)
        self.outcome = LaunchOutcome()
        jobs = [wave for wave in waves(self.units) if all(unit.name != REPORT for unit in wave)]
        for wave in jobs:
            states = self.run_wave(wave, self.launcher.wait)
            if any(state.state != "done" for state in states):
                for unit, state in zip(wave, states, strict=True):
                    if state.state == "failed":
                        self.line(f"{unit.label}: FAILED (job {state.job_id}); its log: {state.log}")
                self.outcome.states = self.states()
                return self.outcome
        report = next(unit for unit in self.units if unit.name == REPORT)
        self.outcome.report = self.build_report(report, run_unit)
        self.outcome.states = self.states()
        return self.outcome

    def build_report(self, unit: Unit, run_unit) -> Path | None:
        """The report unit, run by the driver itself once every other unit is done."""
        folder = unit_folder(self.config, unit.name)
        started = time.time()
        done = run_unit(self.config, self.followups, unit.name)
        write_record(folder, DONE, {"key": self.key(unit), "time": time.time(),
                                    "seconds": time.time() - started, "host": os.uname().nodename})  # fmt: skip
        return done.report


__all__ = ["LaunchOutcome", "SubmititLauncher"]
