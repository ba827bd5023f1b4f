"""`experiment --status` and the submitit launcher on a result folder written before the launcher existed
(no `units/` records): a unit whose result the engine would reuse is done, and is not submitted again; one
made from other inputs is pending. The elapsed column: the current attempt, and a requeued job's attempt
number and time in all."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _launch import local_launcher, toy_launch_args
from _tiny_run import ROOT

from cxr_ldm.commands.experiment import launch, parse_command
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.engine import run_experiment, run_unit
from cxr_ldm.experiments.status_table import status_table
from cxr_ldm.experiments.unit_job import UnitJob
from cxr_ldm.experiments.unit_records import (
    DONE,
    EARLIER,
    GONE,
    JOB,
    STARTED,
    clear_run,
    read_result,
    record_start,
    unit_state,
    write_record,
)

ARM = "arms/unet-text/seed0"


def test_a_folder_written_before_the_launcher_lists_its_reusable_units_as_done(tmp_path: Path) -> None:
    from test_experiment import UNET_TEXT

    arm_file = tmp_path / "unet-text.yaml"  # the arm's own file, edited below
    shutil.copy(UNET_TEXT[-1], arm_file)
    arms = [{"name": "unet-text", "configs": [*UNET_TEXT[:-1], str(arm_file)]}]
    args = toy_launch_args(tmp_path, "out", seeds="[0]", arms=arms)
    out = tmp_path / "out"
    write_record(out / "units" / ARM, JOB, {"key": "an earlier launcher's", "job_id": "4000000"})
    run_experiment(*parse_command(args).experiment)
    # The in-process run is each unit's job: its process, as `--status` from another shell sees it.
    job = read_result(out / "units" / ARM / JOB)
    assert (job["job_id"], job["cluster"]) == (str(os.getpid()), "local")
    (out / "units" / ARM / DONE).rename(out / "units" / ARM / "done.later")
    # from another process (this test's own process is no job of its own: its run has returned)
    shown = subprocess.run([sys.executable, "-m", "cxr_ldm", "experiment", *args, "--status"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300).stdout  # fmt: skip
    assert re.search(rf"^{ARM}\s+running\s+{os.getpid()}\s", shown, re.MULTILINE), shown
    own = {s.name: s for s in launch(parse_command([*args, "--status"])).states}[ARM]
    assert (own.state, own.detail) == ("done", EARLIER)  # judged by its result, as a finished job's unit
    # a dead run whose pid another process was given since is not taken for running: its result decides
    write_record(out / "units" / ARM, JOB, {**job, "process_start": job["process_start"] - 1})
    dead = {s.name: s for s in launch(parse_command([*args, "--status"])).states}[ARM]
    assert (dead.state, dead.detail) == ("done", EARLIER)
    write_record(out / "units" / ARM, JOB, job)
    (out / "units" / ARM / "done.later").rename(out / "units" / ARM / DONE)
    # A done record counts only while the unit's result is there.
    baseline = out / "baseline" / "result.json"
    kept = baseline.read_bytes()
    baseline.unlink()
    states = {s.name: s for s in launch(parse_command([*args, "--status"])).states}
    assert (states["baseline"].state, states["baseline"].detail) == ("pending", GONE)
    assert states[ARM].state == "done"
    with pytest.raises(ConfigError, match="baseline/result.json is missing"):
        run_unit(*parse_command(args).experiment, "report")
    baseline.write_bytes(kept)
    # An edited arm config file is in its units' keys alone: the arm's done record no longer counts and its
    # result was made from other inputs; the references and the baseline, which never read it, stay done.
    arm_file.write_text(arm_file.read_text().replace("lr: 1.0e-3", "lr: 2.0e-3"))
    edited = {s.name: s for s in launch(parse_command([*args, "--status"])).states}
    assert edited[ARM].state == "pending"
    assert [(edited[n].state, edited[n].detail) for n in ("references", "baseline")] == [("done", "")] * 2
    arm_file.write_text(arm_file.read_text().replace("lr: 2.0e-3", "lr: 1.0e-3"))
    shutil.rmtree(out / "units")  # as a run before the launcher left it: results, no unit records
    (out / "results.json").unlink()

    status = launch(parse_command([*args, "--status"]))
    states = {s.name: s for s in status.states}
    assert (states["references"].state, states["references"].detail) == ("done", EARLIER)
    assert (states[ARM].state, states[ARM].detail) == ("done", EARLIER)
    assert (states["baseline"].state, states["baseline"].detail) == ("done", EARLIER)
    result = read_result(out / ARM / "result.json")
    assert states[ARM].seconds == sum(result["seconds"].values())  # its fit and evaluation, as recorded
    assert states["report"].state == "done"  # every other unit done: --status builds the report
    assert (out / "results.json").is_file()
    table = status_table(status.states)
    assert f"{ARM}  done (earlier run)" in table and "4 done" in table

    # The engine agrees: it reuses that unit as it is. The launcher submits nothing.
    assert run_unit(*parse_command(args).experiment, ARM).reused == ["unet-text seed 0"]
    assert launch(parse_command([*args, *local_launcher()])).submitted == []
    # A launcher made in Python from a config with `threads: auto` (local jobs one per core: the 1 thread this
    # folder was made with) judges the earlier results with the resolved inputs, so they are done.
    from dataclasses import replace

    from cxr_ldm.experiments.submitit_launcher import SubmititLauncher
    from cxr_ldm.experiments.threads import available_cores

    command = parse_command([*args, *local_launcher(array_parallelism=available_cores())])
    config, followups = command.experiment
    launcher = SubmititLauncher(replace(config, threads="auto"), followups, command.launcher)
    assert {s.name: s.state for s in launcher.states()}[ARM] == "done"

    # Judged with other protocol settings, the result is no longer this unit's: pending, and the baseline's
    # too; the references are not judged by the protocol and stay done. The folders are left as they are.
    other = launch(parse_command([*args, "--protocol.probe_images", "3", "--status"]))
    assert {s.name: s.state for s in other.states} == {
        "references": "done",
        "baseline": "pending",
        ARM: "pending",
        "report": "pending",
    }
    assert (out / ARM / "result.json").is_file()

    # UnitJob (what submitit runs, and runs again when the job is requeued) counts its starts.
    job = UnitJob(*parse_command(args).experiment, "references")
    job()
    job()
    started = read_result(out / "units" / "references" / STARTED)
    assert started["attempt"] == 2 and started["first_time"] < started["time"]
    references = launch(parse_command([*args, "--status"])).states[0]
    assert (references.state, references.attempts, references.detail) == ("done", 2, "")


def test_status_lists_an_arm_whose_config_file_is_missing_as_pending(tmp_path: Path, capsys) -> None:
    """The table is drawn without reading the arm's config files when the arm has no result yet: the unit
    whose file is missing is pending (its own job fails with the error in its log), the driver does not
    stop on it."""
    from test_experiment import UNET_TEXT

    from cxr_ldm.commands.experiment import main

    arms = [{"name": "good", "configs": UNET_TEXT},
            {"name": "broken", "configs": [str(tmp_path / "missing.yaml")]}]  # fmt: skip
    assert (
        main([*toy_launch_args(tmp_path, "out", seeds="[0]", arms=arms), *local_launcher(), "--status"]) == 0
    )
    assert "arms/broken/seed0  pending" in capsys.readouterr().out


def test_the_elapsed_column_counts_the_current_attempt_and_a_requeued_job_s_attempts(tmp_path: Path) -> None:
    folder, key = tmp_path / "units" / ARM, "k"
    write_record(folder, JOB, {"key": key, "job_id": str(os.getpid()), "cluster": "local", "log": "x.err"})
    first = record_start(folder, key, pid=os.getpid())
    assert first["attempt"] == 1
    running = unit_state(folder, ARM, key)
    assert (running.state, running.attempts) == ("running", 1)
    assert "attempt" not in status_table([running])  # a job that started once: its time alone

    # The job requeued (preempted) and started again 90 s later: its elapsed time counts from this start,
    # and the row says which attempt it is and the time since the first start.
    write_record(folder, STARTED, {**first, "time": first["time"] - 90, "first_time": first["time"] - 90})
    again = record_start(folder, key, pid=os.getpid())
    assert (again["attempt"], again["first_time"]) == (2, first["time"] - 90)
    running = unit_state(folder, ARM, key)
    assert running.seconds < 30 and 90 <= running.since_first < 120
    row = status_table([running]).splitlines()[1]
    assert "(attempt 2, 1m3" in row or "(attempt 2, 1m4" in row or "(attempt 2, 1m5" in row, row

    # It finished: the elapsed time of the attempt that finished it, and the time in all.
    write_record(folder, DONE, {"key": key, "time": time.time(), "seconds": 12.0})
    done = unit_state(folder, ARM, key)
    assert (done.state, done.seconds, done.attempts) == ("done", 12.0, 2)
    assert "0m12s (attempt 2, 1m3" in status_table([done])

    # A new job for the unit (a rerun after a failure) starts at attempt 1 again.
    clear_run(folder)
    assert record_start(folder, key)["attempt"] == 1
