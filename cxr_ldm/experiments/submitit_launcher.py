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

from cxr_ldm.experiments.followup import Followup
from cxr_ldm.experiments.launcher_spec import LauncherSpec
from cxr_ldm.experiments.plan import REPORT, Unit, plan_units, waves
from cxr_ldm.experiments.spec import ExperimentConfig
from cxr_ldm.experiments.unit_inputs import UnitInputs, earlier_result, result_kept
from cxr_ldm.experiments.unit_job import UnitJob
from cxr_ldm.experiments.unit_records import (
    DONE,
    JOB,
    UnitState,
    clear_run,
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
        return unit_key(self.config, self.followups, unit.name, self.inputs.files)

    def state(self, unit: Unit) -> UnitState:
        """The unit's state from its records, or done by the result an earlier run left from the same inputs
        (a folder written before the launcher existed): never submitted again, as the engine would reuse it."""
        folder = unit_folder(self.config, unit.name)
        return unit_state(folder, unit.name, self.key(unit), self.live.get(unit.name),
                          earlier=lambda: earlier_result(self.config, unit.name, self.inputs),
                          kept=result_kept(self.config, unit))  # fmt: skip

    def states(self) -> list[UnitState]:
        return [self.state(unit) for unit in self.units]

    def executor(self):
        import submitit

        folder = Path(self.launcher.folder or Path(self.config.out) / "jobs")
        executor = submitit.AutoExecutor(
            folder=folder,
            cluster=self.launcher.cluster,
            slurm_max_num_timeout=self.launcher.max_requeues,
        )
        executor.update_parameters(name=self.config.name[:40], **self.launcher.executor_parameters())
        return executor

    def submit(self, units: Sequence[Unit]) -> None:
        """`units` as jobs (one array on SLURM), each recorded in its unit folder before this returns."""
        if not units:
            return
        executor = self.executor()
        calls = [UnitJob(self.config, self.followups, unit.name) for unit in units]
        if len(calls) == 1:
            jobs = [executor.submit(calls[0])]
        else:
            with executor.batch():
                jobs = [executor.submit(call) for call in calls]
        for unit, job in zip(units, jobs, strict=True):
            folder = unit_folder(self.config, unit.name)
            clear_run(folder)
            write_record(folder, JOB, {"key": self.key(unit), "job_id": str(job.job_id),
                                       "cluster": self.launcher.cluster, "log": str(job.paths.stderr),
                                       "stdout": str(job.paths.stdout), "submitted": time.time()})  # fmt: skip
            self.live[unit.name] = job
            self.line(f"{unit.label}: submitted as job {job.job_id} (log {job.paths.stderr})")

    def run_wave(self, wave: Sequence[Unit], wait: bool) -> list[UnitState]:
        """Submit the wave's missing units (at most `array_parallelism` local processes at once) and, when
        `wait`, wait until none runs; returns the wave's states."""
        todo = []
        for unit in wave:
            state = self.state(unit)
            if state.state == "running":
                self.line(f"{unit.label}: job {state.job_id} is still running; waiting for it")
                self.outcome.attached.append(unit.name)
            elif state.state != "done":
                todo.append(unit)
        parallel = self.launcher.array_parallelism if self.launcher.cluster == "local" else len(todo)
        while True:
            running = [unit for unit in wave if self.state(unit).state == "running"]
            room = max(parallel - len(running), 0) if todo else 0
            batch, todo = todo[:room], todo[room:]
            self.submit(batch)
            self.outcome.submitted += [unit.name for unit in batch]
            if not wait or (not running and not batch and not todo):
                if wait:
                    self.wait_for_exit(wave)
                return [self.state(unit) for unit in wave]
            time.sleep(self.launcher.poll_seconds)

    def wait_for_exit(self, wave: Sequence[Unit]) -> None:
        """A job records its unit done before its process ends: wait for the processes of the wave's jobs
        that this launcher submitted, so that none still runs when it returns (a later launch or `--status`
        would take a job still exiting for one at work)."""
        jobs = [self.live[unit.name] for unit in wave if unit.name in self.live]
        while not all(job.done() for job in jobs):
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
