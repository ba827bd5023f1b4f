"""Two-process DDP on CPU (gloo) runs `fit` to the end through Lightning's own strategy, for every text
encoder family: DDP (without find_unused_parameters) fails on a step where a trained parameter got no
gradient, so each family's trained set must all take part in the loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from _tiny_run import ROOT, fit_args
from test_variants_configs import FINETUNE, variant_args

DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]


def run_ddp(args: list[str]) -> subprocess.CompletedProcess:
    tests = str(ROOT / "tests")
    path = os.pathsep.join(p for p in (str(ROOT), tests, os.environ.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "cxr_ldm", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    return result


def test_two_process_ddp_fit_runs_to_the_end(tmp_path, phantom_root):
    """Also: with the same batches on both ranks (no distributed sampler), the ranks' losses differ,
    because each rank draws its own noise, timesteps and condition dropout."""
    probe = '{"class_path": "_rank_probe.RankLossProbe", "init_args": {"out_dir": "%s"}}' % (
        tmp_path / "probe"
    )
    run_ddp(
        fit_args(
            tmp_path, phantom_root, *DDP, "--trainer.use_distributed_sampler", "false",
            "--trainer.callbacks+", probe,
        )
    )  # fmt: skip
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4
    assert checkpoint["ema"]["num_updates"] == 4
    # rank zero alone wrote the resolved config
    assert len(list(tmp_path.glob("tensorboard/version_*/config.yaml"))) == 1
    ranks = [
        [json.loads(line) for line in (tmp_path / "probe" / f"rank{r}.jsonl").read_text().splitlines()]
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) == 4
    for zero, one in zip(*ranks, strict=True):
        assert zero["prompts"] == one["prompts"]  # the same images and prompts...
        assert zero["loss"] != one["loss"]  # ...with different noise


# One config per text-encoder family (the U-Net-only CLIP case is the test above).
FAMILIES = {
    "clip-trained": "sd14-unet-text-pa",
    "bert-projection": "pubmedbert-sd21-mlp-pa",
    "bert-trained": "sapbert-unet-text-pa",
    "lora": "lora-unet-text-pa",
    "textual-inversion": "textual-inversion-pa",
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_two_process_ddp_for_every_text_encoder_family(tmp_path, phantom_root, family):
    config = FINETUNE / f"{FAMILIES[family]}.yaml"
    run_ddp(variant_args(config, tmp_path / "run", phantom_root, *DDP, "--trainer.limit_val_batches", "0"))
    checkpoint = torch.load(
        tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["global_step"] == 2


def test_skip_policy_is_refused_under_ddp_before_training(tmp_path, phantom_root):
    """Lightning cannot skip a step on one DDP rank: `nonfinite_loss: skip` with two processes is a
    configuration error at start, not a crash at the first non-finite loss hours later."""
    args = fit_args(
        tmp_path, phantom_root, "--trainer.strategy", "ddp", "--trainer.devices", "2",
        "--model.init_args.objective.nonfinite_loss", "skip",
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "cxr_ldm", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "nonfinite_loss: skip works in a single process only" in result.stderr
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").glob("*.ckpt"))
