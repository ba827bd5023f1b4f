"""The experiment's launchers: the submitit launcher (submitit's local executor: separate processes on this
machine) against the in-process default on the same toy experiment; which launcher a config selects;
dependency order; a failed unit reported while the rest finish; a rerun submits only what is missing and
never a second job for a unit whose job still runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _launch import comparable, local_launcher, toy_launch_args
from _tiny_run import ROOT
from test_experiment import UNET_TEXT

from cxr_ldm.commands.experiment import launch, main, parse_command
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.unit_records import DONE, STARTED, read_result


def test_the_launcher_is_chosen_by_the_config_and_a_cluster_profile(tmp_path: Path) -> None:
    args = toy_launch_args(tmp_path, "out")
    assert parse_command(args).launcher.kind == "in_process"  # the default: this process
    profile = parse_command([*args, "--config", str(ROOT / "configs/clusters/example-slurm.yaml")]).launcher
    assert (profile.kind, profile.cluster, profile.partition) == ("submitit", "slurm", "gpu")
    params = profile.executor_parameters()
    assert params["tasks_per_node"] == params["gpus_per_node"] == 4
    assert params["slurm_array_parallelism"] == profile.array_parallelism
    assert params["slurm_qos"] == "normal"  # an extra option, given without its slurm_ prefix
    bad = tmp_path / "bad.yaml"
    bad.write_text("launcher:\n  kind: submitit\n  slurm: {slurm_qos: high}\n")
    with pytest.raises(ConfigError, match="launcher.slurm: write the keys without their slurm_ prefix"):
        parse_command([*args, "--config", str(bad)])
    with pytest.raises(ConfigError, match="launcher.nodes 2: the local executor runs on this machine only"):
        parse_command([*args, *local_launcher(nodes=2)])
    # a cluster's settings without `kind: submitit` ran every unit in this process, in silence
    forgot = tmp_path / "forgot.yaml"
    forgot.write_text("launcher:\n  cluster: slurm\n  partition: gpu\n")
    with pytest.raises(ConfigError, match="launcher.cluster, launcher.partition given without launcher.kind: set "
                                          "launcher.kind: submitit"):  # fmt: skip
        parse_command([*args, "--config", str(forgot)])
    here = parse_command([*args, "--config", str(forgot), "--launcher.kind", "in_process"]).launcher
    assert (here.kind, here.cluster) == ("in_process", "slurm")  # stated: the profile's units run here


@pytest.mark.slow  # about 100 s on 2 loaded cores: an in-process run, then units as separate processes
def test_units_as_local_jobs_match_the_in_process_run_and_a_rerun_submits_only_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    straight = toy_launch_args(tmp_path, "straight")
    assert main(straight) == 0
    expected = comparable(
        json.loads((tmp_path / "straight" / "results.json").read_text()), tmp_path / "straight"
    )

    out = tmp_path / "jobs"
    args = [*toy_launch_args(tmp_path, "jobs"), *local_launcher(array_parallelism=2)]
    # Submitted without waiting: the references' job runs; the same command again finds it and submits nothing.
    first = launch(parse_command([*args, *local_launcher(array_parallelism=2, wait=False)]))
    assert first.submitted == ["references"]
    again = launch(parse_command([*args, *local_launcher(array_parallelism=2, wait=False)]))
    assert again.submitted == [] and "references" in [s.name for s in again.states if s.state == "running"]
    assert main(args) == 0
    listed = capsys.readouterr().out
    assert "arms/unet-text/seed1  done" in listed and "report" in listed
    results = json.loads((out / "results.json").read_text())
    assert comparable(results, out) == expected  # every value but the wall times

    units = out / "units"
    after = ("baseline", "arms/unet-text/seed0", "arms/unet-text/seed1")  # what needs the references alone
    started = {name: read_result(units / name / STARTED) for name in after}
    done = {name: read_result(units / name / DONE)["time"] for name in after}
    references_done = read_result(units / "references" / DONE)["time"]
    assert all(record["time"] > references_done for record in started.values())  # after what they need
    assert len({record["pid"] for record in started.values()}) == 3  # each its own process
    # the first two submitted (the baseline and seed 0) had both started before either finished: two at once
    assert min(done["baseline"], done[after[1]]) > max(started[name]["time"] for name in after[:2])

    # Nothing missing: nothing submitted. One unit's record gone: that unit alone.
    assert launch(parse_command(args)).submitted == []
    (units / "arms/unet-text/seed1" / DONE).unlink()
    (out / "arms/unet-text/seed1" / "result.json").unlink()
    rerun = launch(parse_command(args))
    assert rerun.submitted == ["arms/unet-text/seed1"]
    assert comparable(json.loads((out / "results.json").read_text()), out) == expected


@pytest.mark.slow  # about 50 s: three local jobs
def test_a_failed_unit_is_reported_with_its_log_arm_and_seed_while_the_others_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    arms = [{"name": "good", "configs": UNET_TEXT},
            {"name": "broken", "configs": [str(tmp_path / "missing.yaml")]}]  # fmt: skip
    args = [*toy_launch_args(tmp_path, "out", seeds="[0]", arms=arms), *local_launcher()]
    assert main(args) == 1
    printed = capsys.readouterr()
    assert "broken seed 0: FAILED" in printed.err
    failed = [line for line in printed.out.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "arms/broken/seed0" in failed[0]
    log = Path(failed[0].rsplit("its log: ", 1)[1])
    assert "missing.yaml" in log.read_text()  # the log names what went wrong
    assert (tmp_path / "out" / "arms" / "good" / "seed0" / "result.json").is_file()  # the other finished
    assert not (tmp_path / "out" / "results.json").exists()  # no report while a unit failed
    assert main([*args, "--status"]) == 1
    assert "arms/broken/seed0  failed" in capsys.readouterr().out


def test_a_rerun_waits_for_a_unit_whose_job_runs_and_never_submits_a_second(tmp_path: Path) -> None:
    """The records of a unit whose local job is alive (a real process under the recorded id): the driver
    submits nothing for it, with or without waiting; once that process has ended without `done.json` the
    unit is failed, and only then would a rerun submit it."""
    import subprocess
    import time

    from cxr_ldm.experiments.submitit_launcher import SubmititLauncher
    from cxr_ldm.experiments.unit_records import JOB, unit_folder, write_record

    args = [*toy_launch_args(tmp_path, "out", seeds="[0]"), *local_launcher()]
    command = parse_command(args)
    config = command.experiment.config
    launcher = SubmititLauncher(*command.experiment, command.launcher)
    key = launcher.key(launcher.units[0])
    job = subprocess.Popen(["sleep", "8"])  # the references unit's job, still running
    write_record(unit_folder(config, "references"), JOB, {"key": key, "job_id": str(job.pid), "cluster": "local",
                                                          "log": "x.err", "submitted": time.time()})  # fmt: skip
    try:
        # Submitted without waiting: the running job is found, nothing is submitted.
        outcome = launch(parse_command([*args, *local_launcher(wait=False)]))
        assert (outcome.submitted, outcome.attached) == ([], ["references"])
        assert outcome.states[0].state == "running" and outcome.states[0].job_id == str(job.pid)
        # Waiting: the driver waits for that job (its wave does not end while the job runs) and, the job ended
        # without finishing the unit, reports it failed; it submitted no second job for it.
        assert job.poll() is None  # still running when the driver starts
        outcome = launch(command)
        assert outcome.submitted == [] and outcome.attached == ["references"]
        assert job.poll() is not None  # it returned after the job's end
    finally:
        job.kill()
        job.wait()
    assert [s.state for s in outcome.states] == ["failed", "pending", "pending", "pending"]
    assert [s.name for s in outcome.failed] == ["references"]
