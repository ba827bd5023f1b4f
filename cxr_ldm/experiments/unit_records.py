"""A launcher's record of each unit, under `<out>/units/<unit>/`: `job.json` (the job that runs it: its id,
cluster and log), `started.json` and `done.json` (written by the unit itself), each stamped with the unit's
key (a digest of the experiment config, the follow-ups and the contents of the files they name: a record of
other inputs is no record of this one).
`started.json` also counts the job's attempts: a requeued job (preempted, timed out) starts again and
writes attempt 2, 3, ..., keeping the time of its first start.

From them, a unit's state: done, running (its job is alive: listed by squeue, or its local process lives),
failed (its job ended without finishing it) or pending (no job of these inputs). A unit with no record of
these inputs whose result an earlier run left, made from the same inputs (experiments/unit_inputs.py
`earlier_result`, asked through `earlier`), is done too: a folder written before the launcher existed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cxr_ldm.data.atomic import write_text_atomic
from cxr_ldm.experiments.followup import Followup
from cxr_ldm.experiments.plan import BASELINE, REFERENCES, arm_unit_name
from cxr_ldm.experiments.spec import ExperimentConfig
from cxr_ldm.experiments.units import digest, plain, read_result

JOB, STARTED, DONE = "job.json", "started.json", "done.json"
# squeue states of a job that ends without running again
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


# What the references, the baseline and an (arm, seed) unit never read: adding a seed to the experiment's seed
# list, an arm or an arm's own `seeds:`, or editing a claim or the name, leaves their keys (and a job running
# them) as they were: an (arm, seed) unit reads its own arm for its own seed alone (`ArmSpec.for_seed`).
NOT_READ_BY_ONE_UNIT = ("name", "claims", "arms", "seeds")


def unit_key(config: ExperimentConfig, followups: Sequence[Followup], name: str, files: str = "") -> str:
    """The unit's key: the part of the experiment config the unit reads, the unit's name and `files`, the
    digest of the files it reads (experiments/unit_inputs.py `UnitInputs.unit_files`). The references, the
    baseline and an (arm, seed) unit read the config but the other arms, the seeds, the claims and the
    follow-ups (an arm unit reads its own arm for its own seed); the follow-ups and the report read all of it."""
    document = plain(config)
    arm = next(
        (
            a.for_seed(seed)
            for a in config.arms
            for seed in config.arm_seeds(a)
            if arm_unit_name(a.name, seed) == name
        ),
        None,
    )
    if name in (REFERENCES, BASELINE) or arm is not None:
        document = {k: v for k, v in document.items() if k not in NOT_READ_BY_ONE_UNIT}
        document["arm"] = None if arm is None else plain(arm)
        return digest({"config": document, "unit": name, "files": files})
    settings = {f.key: plain(f.settings) for f in followups}
    return digest({"config": document, "followups": settings, "unit": name, "files": files})


def unit_folder(config: ExperimentConfig, name: str) -> Path:
    return Path(config.out) / "units" / name


def write_record(folder: Path, kind: str, record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / kind, json.dumps(record, indent=2) + "\n")


def read_record(folder: Path, kind: str, key: str) -> dict | None:
    """The record `kind` of the unit when it holds these inputs' key, else None."""
    record = read_result(folder / kind)
    return record if record is not None and record.get("key") == key else None


def record_start(folder: Path, key: str, **facts) -> dict:
    """Write `started.json` for a start of the unit's job: attempt 1, or one more than the job's last start
    (a requeued job), keeping the time of the first start. Returns the record."""
    now = time.time()
    last = read_record(folder, STARTED, key)
    attempt = 1 if last is None else int(last.get("attempt", 1)) + 1
    first = now if last is None else float(last.get("first_time", last["time"]))
    record = {"key": key, "time": now, "attempt": attempt, "first_time": first, **facts}
    write_record(folder, STARTED, record)
    return record


def clear_run(folder: Path) -> None:
    """Forget the unit's last start and end (a new job runs it)."""
    for kind in (STARTED, DONE):
        (folder / kind).unlink(missing_ok=True)


def record_own_job(folder: Path, key: str) -> float:
    """This process as the unit's job (the in-process run): `job.json` naming its pid, host and start time
    (in place of any earlier launcher's), then `started.json`. Returns the start time."""
    pid, host = os.getpid(), os.uname().nodename
    write_record(folder, JOB, {"key": key, "job_id": str(pid), "cluster": "local", "log": "", "host": host,
                               "process_start": process_start(pid), "submitted": time.time()})  # fmt: skip
    return record_start(folder, key, host=host, pid=pid)["time"]


NO_SQUEUE = "UNKNOWN (no squeue on this machine)"


def squeue_state(job_id: str) -> str | None:
    """The job's state as squeue lists it; None when it is no longer listed. When squeue cannot say (it is
    not installed here, or fails: the controller is busy or down), `UNKNOWN (...)`: a job that may still run
    is never taken for one that ended, so it is not submitted a second time."""
    if shutil.which("squeue") is None:
        return NO_SQUEUE
    try:
        listed = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%T"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return "UNKNOWN (squeue did not answer in 60 s)"
    if listed.returncode != 0:
        if "invalid job id" in listed.stderr.lower():
            return None  # the controller has forgotten the job: it ended
        first = (listed.stderr.strip().splitlines() or [f"exit status {listed.returncode}"])[0]
        return f"UNKNOWN ({first if first.startswith('squeue') else 'squeue: ' + first})"
    states = listed.stdout.split()
    return states[0] if states else None


def process_alive(pid: int, started: int | None = None) -> bool:
    """A local job's process still runs (a zombie left for its parent to reap counts as ended). `started`:
    the process's start time (`process_start`) when it was recorded, so that another process that was given
    the same pid later is not taken for it."""
    fields = _stat_fields(pid)
    return (
        fields is not None and fields[0] != "Z" and (started is None or process_start(pid, fields) == started)
    )


def process_start(pid: int, fields: list[str] | None = None) -> int | None:
    """The process's start time in clock ticks after boot (/proc/<pid>/stat), None where there is no /proc."""
    fields = fields if fields is not None else _stat_fields(pid)
    try:
        return None if fields is None else int(fields[19])
    except (IndexError, ValueError):
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), None when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


@dataclass
class UnitState:
    """One row of `--status`."""

    name: str
    state: str  # pending | running | done | failed
    job_id: str = ""
    seconds: float | None = None
    log: str = ""
    # squeue's state of a running job (PENDING, RUNNING, REQUEUED...), or where a result came from
    detail: str = ""
    attempts: int | None = None  # starts of its job (more than 1: requeued), when recorded
    since_first: float | None = None  # seconds from the job's first start to its end (or to now)
    other_inputs: bool = False  # running: a job of other inputs in the unit's folder, not the unit's own


def job_alive(job: dict, live=None) -> str | None:
    """The state of a recorded job while it is alive, else None. `live`: submitit's Job when this process
    submitted it (a local job is then this process's child, and submitit knows when it ended)."""
    if job["cluster"] == "slurm":
        state = squeue_state(job["job_id"])
        return state if state is not None and state not in ENDED else None
    if live is not None:
        return None if live.done() else "RUNNING"
    if job.get("host") not in (None, os.uname().nodename):
        return None  # an in-process run on another host: its process cannot be looked up from here
    if job["job_id"] == str(os.getpid()) and job.get("host") is not None:
        return None  # this process's own record: an in-process run that has returned (or failed) here
    return "RUNNING" if process_alive(int(job["job_id"]), job.get("process_start")) else None


def live_job(folder: Path, live=None) -> dict | None:
    """The unit folder's recorded job, whatever inputs it runs, while it is alive and is not this process;
    with `state`, its state. Two jobs in one unit folder would write the same files."""
    job = read_result(folder / JOB)
    if job is None or not {"cluster", "job_id"} <= set(job):
        return None
    state = job_alive(job, live)
    return None if state is None else {**job, "state": state}


EARLIER = "earlier run"
GONE = "its result is gone"  # a done record whose result was deleted


def result_seconds(result: dict) -> float | None:
    """The seconds a unit's result records (an arm unit's fit, as training time, and evaluation), if any."""
    seconds = result.get("seconds")
    return sum(seconds.values()) if isinstance(seconds, dict) and seconds else None


def unit_state(
    folder: Path,
    name: str,
    key: str,
    live=None,
    earlier: Callable[[], dict | None] | None = None,
    kept: Callable[[], bool] | None = None,
) -> UnitState:
    """The unit's state from its records. `live`: submitit's Job when this process submitted it. `earlier`:
    asked (only when neither a done record nor a live job says otherwise) for the unit's result an earlier
    run left from the same inputs; with one the unit is done. `kept` (a unit that leaves a result of its own):
    whether that result is still there; a done record of a unit whose result was deleted counts for nothing."""
    done = read_record(folder, DONE, key)
    job = read_record(folder, JOB, key)
    started = read_record(folder, STARTED, key)
    job_id, log = (job["job_id"], job["log"]) if job else ("", "")
    attempts = started.get("attempt", 1) if started else None
    first = started.get("first_time", started["time"]) if started else None
    if done is not None:
        if kept is not None and not kept():
            return UnitState(name, "pending", job_id, None, log, GONE, attempts)
        since_first = None if first is None else done["time"] - first
        return UnitState(name, "done", job_id, done["seconds"], log, "", attempts, since_first)
    alive = None if job is None else job_alive(job, live)
    if alive is not None:
        seconds = None if started is None else time.time() - started["time"]
        since_first = None if first is None else time.time() - first
        return UnitState(name, "running", job_id, seconds, log, alive, attempts, since_first)
    result = earlier() if earlier is not None else None
    if result is not None:
        return UnitState(name, "done", job_id, result_seconds(result), log, EARLIER)
    if job is None:
        return UnitState(name, "pending")
    elsewhere = job.get("host") not in (None, os.uname().nodename)
    detail = f"or still running on {job['host']}: not visible from here" if elsewhere else ""
    return UnitState(name, "failed", job_id, None, log, detail, attempts)


__all__ = [
    "DONE",
    "EARLIER",
    "GONE",
    "JOB",
    "NO_SQUEUE",
    "STARTED",
    "UnitState",
    "clear_run",
    "live_job",
    "read_record",
    "record_own_job",
    "record_start",
    "result_seconds",
    "unit_folder",
    "unit_key",
    "unit_state",
    "write_record",
]
