"""A unit is a function of its inputs: the (arm, seed) unit fitted in this process after other units ran
here (its latent cache built by that fit) and fitted again as a job in a fresh process that finds the cache
on disk gives bitwise the same checkpoint, tensor by tensor, and the same metrics; the cache is reused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import submitit
import torch
from _launch import toy_launch_args

from cxr_ldm.commands.experiment import parse_experiment
from cxr_ldm.experiments.engine import run_unit
from cxr_ldm.experiments.unit_job import UnitJob


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow  # about 50 s: two fits, one in a submitit job
def test_a_unit_in_a_fresh_process_that_finds_the_cache_matches_the_unit_run_after_others(
    tmp_path: Path,
) -> None:
    config, followups = parse_experiment(toy_launch_args(tmp_path, "out", seeds="[0]"))
    unit = "arms/unet-text/seed0"
    run_unit(config, followups, "references")  # trains the evaluator in this process first
    run_unit(config, followups, unit)
    run = tmp_path / "out" / "arms" / "unet-text" / "seed0"
    first = weights(run / "fit" / "checkpoints" / "last.ckpt")
    metrics = json.loads((run / "result.json").read_text())["metrics"]
    caches = sorted((tmp_path / "out" / "cache").rglob("latents-*"))
    assert caches, "the fit wrote its latent cache"
    stamps = {path: path.stat().st_mtime_ns for path in caches}

    shutil.rmtree(run / "fit")
    (run / "result.json").unlink()
    job = submitit.AutoExecutor(tmp_path / "jobs", cluster="local").submit(UnitJob(config, followups, unit))
    assert job.result() == ["unet-text seed 0"]
    second = weights(run / "fit" / "checkpoints" / "last.ckpt")
    assert sorted(first) == sorted(second)
    differ = [name for name in first if not torch.equal(first[name], second[name])]
    assert not differ, f"{len(differ)} of {len(first)} tensors differ, e.g. {differ[:3]}"
    assert json.loads((run / "result.json").read_text())["metrics"] == metrics
    assert {path: path.stat().st_mtime_ns for path in caches} == stamps  # found on disk, not rebuilt
