"""`threads: auto`: resolved by the command to the cores a unit has under its launcher, before any unit is
keyed, so a unit's key and results hold the number, never `auto`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _launch import local_launcher, toy_launch_args

from cxr_ldm.commands.experiment import parse_command
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.launcher_spec import LauncherSpec
from cxr_ldm.experiments.threads import available_cores, resolve_threads
from cxr_ldm.experiments.unit_records import unit_key

CORES = len(os.sched_getaffinity(0))


def test_auto_resolves_to_the_cores_a_unit_has_under_each_launcher() -> None:
    assert available_cores() == CORES
    assert resolve_threads(3) == 3
    assert resolve_threads("auto") == CORES  # in this process, one unit at a time
    assert resolve_threads("auto", LauncherSpec()) == CORES
    local = LauncherSpec(kind="submitit", cluster="local", array_parallelism=2)
    assert resolve_threads("auto", local) == max(1, CORES // 2)
    crowded = LauncherSpec(kind="submitit", cluster="local", array_parallelism=CORES + 1)
    assert resolve_threads("auto", crowded) == 1
    slurm = LauncherSpec(kind="submitit", cluster="slurm", cpus_per_task=8)
    assert resolve_threads("auto", slurm) == 8
    with pytest.raises(
        ConfigError, match="threads: auto with launcher.cluster slurm needs launcher.cpus_per_task"
    ):
        resolve_threads("auto", LauncherSpec(kind="submitit", cluster="slurm"))
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(ConfigError, match="threads must be a whole number of at least 1 or 'auto'"):
            resolve_threads(bad)


def test_a_command_with_threads_auto_keys_its_units_by_the_resolved_number(tmp_path: Path) -> None:
    args = toy_launch_args(tmp_path, "out")
    auto = parse_command([*args, "--threads", "auto"]).experiment
    assert auto.config.threads == CORES
    explicit = parse_command([*args, "--threads", str(CORES)]).experiment
    other = parse_command([*args, "--threads", str(CORES + 1)]).experiment
    name = "references"
    assert unit_key(*auto, name) == unit_key(*explicit, name) != unit_key(*other, name)
    jobs = parse_command([*args, "--threads", "auto", *local_launcher(array_parallelism=2)]).experiment
    assert jobs.config.threads == max(1, CORES // 2)
    with pytest.raises(ConfigError, match="threads must be a whole number of at least 1 or 'auto', got 0"):
        parse_command([*args, "--threads", "0"])
