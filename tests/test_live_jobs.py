"""Jobs at work in an experiment's unit folders: a unit's key holds what it reads alone (adding a seed while
jobs run leaves their units' keys as they were), a unit that a live job runs is never run a second time
beside it (by the in-process run or by a launcher, whatever inputs that job runs), squeue that cannot answer
is no proof that a job ended, and a cancelled SLURM job ends its driver's wait."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from _launch import local_launcher, toy_launch_args
from test_slurm import slurm_missing

from cxr_ldm.commands.experiment import launch, parse_command
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.engine import run_experiment
from cxr_ldm.experiments.unit_records import JOB, job_alive, squeue_state, unit_folder, write_record

ARM = "arms/unet-text/seed0"


def _keys(tmp_path: Path, *extra: str) -> dict[str, str]:
    from cxr_ldm.experiments.submitit_launcher import SubmititLauncher

    command = parse_command([*toy_launch_args(tmp_path, "out", seeds="[0]"), *local_launcher(), *extra])
    launcher = SubmititLauncher(*command.experiment, command.launcher)
    return {unit.name: launcher.key(unit) for unit in launcher.units}


def test_adding_a_seed_or_editing_a_claim_leaves_the_keys_of_the_units_that_do_not_read_them(
    tmp_path: Path,
) -> None:
    """Every unit's key digested the whole config: a seed added while jobs ran gave the running units other
    keys, and a rerun submitted them a second time into the same folders."""
    first = _keys(tmp_path)
    more = _keys(tmp_path, "--seeds", "[0, 1]")
    for name in ("references", "baseline", ARM):
        assert more[name] == first[name], name
    assert more["report"] != first["report"] and "arms/unet-text/seed1" in more
    claims = [{"id": "other", "text": "t", "comparisons": [
        {"a": "unet-text", "b": "baseline", "metric": "probe/cond_auroc"}]}]  # fmt: skip
    edited = _keys(tmp_path, "--claims", json.dumps(claims), "--name", "renamed")
    assert {n: edited[n] == first[n] for n in first} == {
        "references": True,
        "baseline": True,
        ARM: True,
        "report": False,
    }
    steps = _keys(tmp_path, "--steps", "3")
    assert steps[ARM] != first[ARM]


@pytest.fixture
def other_process():
    """A live process of this machine, standing for a job that runs a unit."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def _record_job(folder: Path, process, key: str = "a job of other inputs") -> None:
    from cxr_ldm.experiments.unit_records import process_start

    write_record(folder, JOB, {"key": key, "job_id": str(process.pid), "cluster": "local", "log": "job.err",
                               "host": os.uname().nodename, "process_start": process_start(process.pid),
                               "submitted": time.time()})  # fmt: skip


def test_the_in_process_run_refuses_a_unit_that_a_live_job_runs(tmp_path: Path, other_process) -> None:
    """`make demo` over a folder where a cluster job ran a unit fitted beside it, in the same folder, and
    wrote its own job record over the job's (which `--status` then lost)."""
    command = parse_command(toy_launch_args(tmp_path, "out", seeds="[0]"))
    folder = unit_folder(command.experiment.config, ARM)
    _record_job(folder, other_process)
    with pytest.raises(ConfigError, match=rf"live jobs run units of .*: unet-text seed 0: job {other_process.pid} "
                                          r"\(local, RUNNING\); wait for them"):  # fmt: skip
        run_experiment(*command.experiment)
    assert json.loads((folder / JOB).read_text())["job_id"] == str(other_process.pid)  # its record stays
    assert not (Path(command.experiment.config.out) / "evaluator").exists()  # refused before any unit ran


def test_a_launcher_waits_for_a_job_of_other_inputs_in_a_unit_folder(tmp_path: Path, other_process) -> None:
    """A job of other inputs (the config changed while it ran) left the unit pending: a rerun submitted a
    second job into the folder the first one still wrote."""
    args = [*toy_launch_args(tmp_path, "out", seeds="[0]"), *local_launcher()]
    command = parse_command(args)
    _record_job(unit_folder(command.experiment.config, "references"), other_process)
    states = {state.name: state for state in launch(parse_command([*args, "--status"])).states}
    assert states["references"].state == "running"
    assert states["references"].job_id == str(other_process.pid)
    assert "a job of other inputs" in states["references"].detail
    outcome = launch(parse_command([*args, *local_launcher(wait=False)]))
    assert outcome.submitted == [] and outcome.attached == ["references"]


def _fake_squeue(folder: Path, monkeypatch, stderr: str, status: int) -> None:
    folder.mkdir()
    script = folder / "squeue"
    script.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit {status}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_squeue_that_fails_is_no_proof_that_a_job_ended(tmp_path: Path, monkeypatch) -> None:
    """One failed squeue call (the controller busy or down) made a running job look failed: a rerun would
    have submitted a second one."""
    _fake_squeue(
        tmp_path / "down", monkeypatch, "slurm_load_jobs error: Unable to contact slurm controller", 1
    )
    state = squeue_state("12345")
    assert state == "UNKNOWN (squeue: slurm_load_jobs error: Unable to contact slurm controller)"
    assert job_alive({"cluster": "slurm", "job_id": "12345"}) == state
    from cxr_ldm.experiments.status_table import status_table
    from cxr_ldm.experiments.unit_records import UnitState

    table = status_table([UnitState("references", "running", "12345", detail=state),
                          UnitState(ARM, "running", "12346", detail="PENDING")])  # fmt: skip
    assert (
        f"running ({state})" in table and "running (pending)" in table
    )  # squeue's own word alone in lower case


def test_squeue_that_no_longer_knows_a_job_says_it_ended(tmp_path: Path, monkeypatch) -> None:
    _fake_squeue(tmp_path / "gone", monkeypatch, "slurm_load_jobs error: Invalid job id specified", 1)
    assert squeue_state("12345") is None
    assert job_alive({"cluster": "slurm", "job_id": "12345"}) is None


def test_a_cancelled_slurm_job_ends_its_drivers_wait(tmp_path: Path) -> None:
    """The driver waited for its jobs' processes through submitit, which asks sacct: on a cluster without
    accounting a cancelled job was never seen to end, and the driver slept for ever."""
    reason = slurm_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the SLURM cluster of scripts/start-slurm.sh: {reason}")
        pytest.skip(reason)
    from cxr_ldm.experiments.submitit_launcher import LaunchOutcome, SubmititLauncher

    launcher_settings = {"kind": "submitit", "cluster": "slurm", "poll_seconds": 0.5, "cpus_per_task": 1}
    command = parse_command([*toy_launch_args(tmp_path, "out", seeds="[0]"), "--launcher",
                             json.dumps(launcher_settings)])  # fmt: skip
    launcher = SubmititLauncher(*command.experiment, command.launcher)
    launcher.outcome = LaunchOutcome()
    references = launcher.units[:1]
    launcher.submit(references)
    job_id = str(launcher.live["references"].job_id)
    subprocess.run(["scancel", job_id], check=True)
    waited = threading.Thread(target=launcher.wait_for_exit, args=(references,), daemon=True)
    waited.start()
    waited.join(timeout=120)
    assert not waited.is_alive(), f"the driver still waits for the cancelled job {job_id}"
    assert launcher.state(references[0]).state == "failed"


def test_only_an_arm_units_job_spans_several_tasks(tmp_path: Path) -> None:
    """With `tasks_per_node: 2` every unit's job had two tasks, and each task ran the unit: two references
    units at once in the same folders (only an (arm, seed) fit trains over the tasks)."""
    reason = slurm_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the SLURM cluster of scripts/start-slurm.sh: {reason}")
        pytest.skip(reason)
    from cxr_ldm.experiments.submitit_launcher import SubmititLauncher

    settings = {
        "kind": "submitit",
        "cluster": "slurm",
        "poll_seconds": 0.5,
        "cpus_per_task": 1,
        "tasks_per_node": 2,
    }
    command = parse_command(
        [*toy_launch_args(tmp_path, "out", seeds="[0]"), "--launcher", json.dumps(settings)]
    )
    launcher = SubmititLauncher(*command.experiment, command.launcher)
    references, arm = launcher.units[0], next(unit for unit in launcher.units if unit.arm is not None)
    try:
        launcher.submit([references, arm])
    finally:
        subprocess.run(["scancel", *(str(job.job_id) for job in launcher.live.values())], check=False)
    scripts = {name: Path(str(job.paths.submission_file)).read_text() for name, job in launcher.live.items()}
    assert "--ntasks-per-node=1" in scripts["references"]
    assert "--ntasks-per-node=2" in scripts[arm.name]


def _slurm_launcher(tmp_path: Path, seeds: str = "[0]", **settings):
    reason = slurm_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the SLURM cluster of scripts/start-slurm.sh: {reason}")
        pytest.skip(reason)
    from cxr_ldm.experiments.submitit_launcher import LaunchOutcome, SubmititLauncher

    settings = {"kind": "submitit", "cluster": "slurm", "poll_seconds": 0.5, "cpus_per_task": 1, **settings}
    command = parse_command(
        [*toy_launch_args(tmp_path, "out", seeds=seeds), "--launcher", json.dumps(settings)]
    )
    launcher = SubmititLauncher(*command.experiment, command.launcher)
    launcher.outcome = LaunchOutcome()
    return launcher


def test_a_failed_unit_is_submitted_again_beside_a_running_one(tmp_path: Path) -> None:
    """On SLURM the room for a wave's submissions was its units to do less its running ones: a failed seed
    waited for its running sibling to end before it was submitted again."""
    launcher = _slurm_launcher(tmp_path, seeds="[0, 1]")
    seed0, seed1 = (unit for unit in launcher.units if unit.arm is not None)
    sleeper = subprocess.run(["sbatch", "--parsable", "--wrap", "sleep 120", "-o", "/dev/null"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    try:
        for unit, job_id in ((seed0, "999999"), (seed1, sleeper)):  # 999999: a job SLURM no longer knows
            write_record(unit_folder(launcher.config, unit.name), JOB, {"key": launcher.key(unit), "job_id": job_id,
                         "cluster": "slurm", "log": "job.err", "submitted": time.time()})  # fmt: skip
        assert [launcher.state(u).state for u in (seed0, seed1)] == ["failed", "running"]
        launcher.run_wave([seed0, seed1], wait=False)
        assert launcher.outcome.submitted == [seed0.name] and launcher.outcome.attached == [seed1.name]
    finally:
        subprocess.run(
            ["scancel", sleeper, *(str(job.job_id) for job in launcher.live.values())], check=False
        )


def test_a_job_the_cluster_refuses_is_one_line(tmp_path: Path) -> None:
    """A profile naming a partition the cluster lacks ended in a 51-line traceback (submitit's FailedJobError)."""
    launcher = _slurm_launcher(tmp_path, partition="nosuch")
    with pytest.raises(
        ConfigError,
        match=r"the cluster refused the jobs of references \(.*Invalid partition.*\); check launcher\.partition \(nosuch\)",
    ):
        launcher.submit(launcher.units[:1])


def test_a_local_jobs_record_tells_its_process_from_a_later_one_with_its_pid(tmp_path: Path) -> None:
    """A local job's record held its pid alone: another process given that pid later was taken for the job,
    and a driver waited on it."""
    from cxr_ldm.experiments.submitit_launcher import SubmititLauncher
    from cxr_ldm.experiments.unit_records import process_start, read_result

    command = parse_command([*toy_launch_args(tmp_path, "out", seeds="[0]"), *local_launcher()])
    launcher = SubmititLauncher(*command.experiment, command.launcher)
    references = launcher.units[0]
    launcher.submit([references])
    job = launcher.live["references"]
    try:
        record = read_result(unit_folder(launcher.config, "references") / JOB)
        assert record["host"] == os.uname().nodename
        assert record["process_start"] == process_start(int(job.job_id)) is not None
        assert job_alive(record) == "RUNNING"  # the job itself, as another shell's `--status` sees it
        assert job_alive({**record, "process_start": record["process_start"] - 1}) is None  # another process
    finally:
        job.cancel(check=False)


def test_a_unit_is_submitted_once_a_job_of_other_inputs_in_its_folder_has_ended(tmp_path: Path) -> None:
    """The launcher waited for such a job, then left the unit pending and exited 0 without submitting it."""
    from cxr_ldm.experiments.submitit_launcher import LaunchOutcome, SubmititLauncher

    command = parse_command([*toy_launch_args(tmp_path, "out", seeds="[0]"), *local_launcher()])
    launcher = SubmititLauncher(*command.experiment, command.launcher)
    launcher.outcome = LaunchOutcome()
    report = launcher.units[-1]  # a unit whose job fails at once here (nothing it needs is done): a fast test
    ending = subprocess.Popen(["sleep", "2"])
    try:
        _record_job(unit_folder(launcher.config, report.name), ending)
        states = launcher.run_wave([report], wait=True)
    finally:
        ending.kill()
        ending.wait()
    assert launcher.outcome.attached == [report.name] and launcher.outcome.submitted == [report.name]
    assert states[0].state == "failed" and not states[0].other_inputs  # its own job ran, and failed


def test_a_launcher_without_squeue_refuses_to_wait_on_a_slurm_job(tmp_path: Path, monkeypatch) -> None:
    """A folder copied from a cluster and finished with the local executor: the driver waited for ever on
    a SLURM job it had no squeue to ask about."""
    from cxr_ldm.experiments.submitit_launcher import LaunchOutcome, SubmititLauncher

    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    command = parse_command([*toy_launch_args(tmp_path, "out", seeds="[0]"), *local_launcher()])
    launcher = SubmititLauncher(*command.experiment, command.launcher)
    launcher.outcome = LaunchOutcome()
    references = launcher.units[0]
    folder = unit_folder(launcher.config, references.name)
    write_record(folder, JOB, {"key": launcher.key(references), "job_id": "77", "cluster": "slurm", "log": "x.err",
                               "submitted": time.time()})  # fmt: skip
    with pytest.raises(ConfigError, match=rf"references: its job 77 is a SLURM job and this machine has no squeue.*"
                                          rf"delete {folder / JOB}"):  # fmt: skip
        launcher.run_wave([references], wait=True)


def test_this_processs_own_record_is_no_live_job(tmp_path: Path) -> None:
    """An in-process run that failed left its record naming this process: a launcher or `--status` in the
    same process (a notebook, a test) took the unit for running, and a waiting launcher looped."""
    from cxr_ldm.experiments.unit_records import process_start, unit_state

    folder = tmp_path / "units" / "references"
    write_record(folder, JOB, {"key": "k", "job_id": str(os.getpid()), "cluster": "local", "log": "",
                               "host": os.uname().nodename, "process_start": process_start(os.getpid())})  # fmt: skip
    assert unit_state(folder, "references", "k").state == "failed"
