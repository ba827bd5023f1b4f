"""The submitit launcher on a real SLURM cluster (scripts/start-slurm.sh starts a local one-node one; .ci/run
does before `make test`): a toy experiment's units submitted as SLURM jobs give the results of the in-process
launcher on the same seed. Without a reachable cluster the test is skipped with the reason; under CI
(`CI=true`) that is a failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from _launch import comparable, toy_launch_args

from cxr_ldm.commands.experiment import launch, main, parse_command
from cxr_ldm.experiments.unit_records import JOB, read_result


def slurm_missing() -> str | None:
    """Why no SLURM cluster can take jobs from here, or None when one can."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no sbatch/sinfo on PATH (start a local cluster with scripts/start-slurm.sh)"
    listed = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        return f"sinfo failed: {listed.stderr.strip()} (scripts/start-slurm.sh starts a local cluster)"
    # `comp`: a node finishing the jobs an earlier test ran; it takes the next one as soon as they are done
    if not any(
        state.rstrip("*~#!%$@^-+") in ("idle", "mix", "alloc", "comp") for state in listed.stdout.split()
    ):
        return f"no SLURM node takes jobs (sinfo: {listed.stdout.split()})"
    return None


def test_units_as_slurm_jobs_match_the_in_process_run(tmp_path: Path) -> None:
    reason = slurm_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the SLURM cluster of scripts/start-slurm.sh: {reason}")
        pytest.skip(reason)
    assert main(toy_launch_args(tmp_path, "straight", seeds="[0]")) == 0
    straight = json.loads((tmp_path / "straight" / "results.json").read_text())

    out = tmp_path / "slurm"
    launcher = {
        "kind": "submitit",
        "cluster": "slurm",
        "poll_seconds": 1,
        "timeout_min": 20,
        "cpus_per_task": 1,
    }
    args = [*toy_launch_args(tmp_path, "slurm", seeds="[0]"), "--launcher", json.dumps(launcher)]
    outcome = launch(parse_command(args))
    assert outcome.submitted == ["references", "baseline", "arms/unet-text/seed0"]
    assert [state.state for state in outcome.states] == ["done"] * 4, outcome.states
    job = read_result(out / "units" / "arms/unet-text/seed0" / JOB)
    assert job["cluster"] == "slurm" and Path(job["log"]).is_file()
    results = json.loads((out / "results.json").read_text())
    assert comparable(results, out) == comparable(straight, tmp_path / "straight")


@pytest.mark.slow  # a toy experiment's units on the local cluster, the arm's fit over two tasks (2 min)
def test_an_arm_fit_over_two_tasks_evaluates_on_task_0_and_only_submitit_requeues(tmp_path: Path) -> None:
    """The arm's job fitted with DDP over its two tasks, then task 0's evaluation waited at a barrier of the
    fit's process group for task 1, which had left: the unit failed every time. And Lightning's own SLURM
    requeue was on in the references job (the evaluator's Trainer), beside submitit's."""
    reason = slurm_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the SLURM cluster of scripts/start-slurm.sh: {reason}")
        pytest.skip(reason)
    launcher = {"kind": "submitit", "cluster": "slurm", "poll_seconds": 1, "timeout_min": 20, "cpus_per_task": 1,
                "tasks_per_node": 2}  # fmt: skip
    args = [*toy_launch_args(tmp_path, "slurm", seeds="[0]"), "--launcher", json.dumps(launcher)]
    outcome = launch(parse_command(args))
    assert [state.state for state in outcome.states] == ["done"] * 4, outcome.states
    logs = {s.name: Path(s.log).read_text() for s in outcome.states if s.log}
    assert "fit" in logs["arms/unet-text/seed0"] and "evaluation" in logs["arms/unet-text/seed0"]
    assert not any("auto-requeueing enabled" in text for text in logs.values())
