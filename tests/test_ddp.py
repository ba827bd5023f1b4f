"""Two-process DDP on CPU (gloo) runs `fit` to the end through Lightning's own strategy, for every text
encoder family: DDP (without find_unused_parameters) fails on a step where a trained parameter got no
gradient, so each family's trained set must all take part in the loss. The ranks agree: a non-finite loss on
one rank makes every rank skip or raise at the same step."""

from __future__ import annotations

import json
import os
import signal
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


# About 25 s each on 2 quiet cores. What makes a family fail under DDP (a trained parameter without a
# gradient at some step) is checked for every config, in one process, by test_variants_configs.py
# (test_config_runs_and_trains_only_what_it_names); the DDP launch itself by the test above.
@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_two_process_ddp_for_every_text_encoder_family(tmp_path, phantom_root, family):
    config = FINETUNE / f"{FAMILIES[family]}.yaml"
    run_ddp(variant_args(config, tmp_path / "run", phantom_root, *DDP, "--trainer.limit_val_batches", "0"))
    checkpoint = torch.load(
        tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["global_step"] == 2


def run_ddp_outcome(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """A two-process fit that may fail; a hang (a rank left waiting in a collective) fails the test after
    `timeout` seconds, with every rank's process killed."""
    tests = str(ROOT / "tests")
    path = os.pathsep.join(p for p in (str(ROOT), tests, os.environ.get("PYTHONPATH", "")) if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "cxr_ldm", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path},
        start_new_session=True,  # the launched ranks share its process group
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the DDP run hung for {timeout} s (a rank waiting for the others):\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def outcomes(folder) -> list[dict]:
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def callback(class_path: str, **init_args) -> list[str]:
    return ["--trainer.callbacks+", json.dumps({"class_path": class_path, "init_args": init_args})]


@pytest.mark.slow
def test_nonfinite_loss_on_one_rank_stops_every_rank_at_the_same_step(tmp_path, phantom_root):
    """`raise`: rank 1 alone sees a non-finite loss at step 1; both ranks raise, naming that step."""
    args = fit_args(
        tmp_path, phantom_root, *DDP,
        *callback("_rank_probe.PoisonRankBatch", rank=1, step=1),
        *callback("_rank_probe.RankOutcome", out_dir=str(tmp_path / "outcome")),
    )  # fmt: skip
    result = run_ddp_outcome(args)
    assert result.returncode != 0
    zero, one = outcomes(tmp_path / "outcome")
    assert one["error"].startswith(
        "FloatingPointError: non-finite loss at global step 1, batch 1 (batch keys"
    )
    assert zero["error"].startswith(
        "FloatingPointError: non-finite loss at global step 1, batch 1 on another DDP rank"
    )


@pytest.mark.slow
def test_nonfinite_loss_on_one_rank_is_skipped_by_every_rank(tmp_path, phantom_root):
    """`skip`: rank 1 alone sees a non-finite loss at step 1; both ranks skip that step and end with the
    same weights."""
    args = fit_args(
        tmp_path, phantom_root, *DDP, "--model.init_args.objective.nonfinite_loss", "skip",
        *callback("_rank_probe.PoisonRankBatch", rank=1, step=1),
        *callback("_rank_probe.RankOutcome", out_dir=str(tmp_path / "outcome")),
    )  # fmt: skip
    result = run_ddp_outcome(args)
    assert result.returncode == 0, result.stderr[-3000:]
    zero, one = outcomes(tmp_path / "outcome")
    assert zero == one
    assert zero["skipped"] == 1 and zero["step"] == 4
    assert "non-finite loss at global step 1, batch 1 on another DDP rank" in result.stderr
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["nonfinite_steps_skipped"] == 1
    assert checkpoint["ema"]["num_updates"] == 3  # the skipped step is no EMA update


@pytest.mark.slow
def test_skip_policy_with_gradient_accumulation_is_refused_under_ddp_before_training(tmp_path, phantom_root):
    """A skipped last micro-batch would leave accumulated gradients unsynchronised across ranks: `skip` with
    `accumulate_grad_batches > 1` under DDP is a configuration error at start, naming both keys."""
    args = fit_args(
        tmp_path, phantom_root, *DDP, "--trainer.accumulate_grad_batches", "2",
        "--model.init_args.objective.nonfinite_loss", "skip",
    )  # fmt: skip
    result = run_ddp_outcome(args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "nonfinite_loss: skip with trainer.accumulate_grad_batches: 2 under DDP" in result.stderr
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))


def probe_rows(folder) -> list[list[dict]]:
    return [
        [json.loads(line) for line in (folder / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("sampling", ["shuffle", "finding_balanced"])
def test_resume_in_the_middle_of_an_epoch_replays_the_batch_order(tmp_path, phantom_root, sampling):
    """Epochs of 4 batches per rank; a run stopped at step 6 (epoch 1, 2 batches in) and resumed from its
    checkpoint trains on the same images, in the same order, on each rank as one run straight to step 8."""

    def run(folder, probe, steps, *extra):
        args = fit_args(
            folder, phantom_root, *DDP, "--trainer.limit_val_batches", "0",
            "--trainer.max_steps", str(steps), "--data.init_args.train_sampling", sampling,
            *callback("_rank_probe.RankLossProbe", out_dir=str(probe)), *extra,
        )  # fmt: skip
        run_ddp(args)

    run(tmp_path / "straight", tmp_path / "straight-probe", 8)
    run(tmp_path / "stopped", tmp_path / "first-probe", 6)
    checkpoint = torch.load(
        tmp_path / "stopped" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["global_step"] == 6 and checkpoint["epoch"] == 1
    run(tmp_path / "stopped", tmp_path / "resumed-probe", 8, "--ckpt_path", "last")
    straight = probe_rows(tmp_path / "straight-probe")
    first, resumed = probe_rows(tmp_path / "first-probe"), probe_rows(tmp_path / "resumed-probe")
    for rank in (0, 1):
        assert [(row["epoch"], row["step"]) for row in resumed[rank]] == [(1, 7), (1, 8)]
        assert [row["images"] for row in first[rank] + resumed[rank]] == [
            row["images"] for row in straight[rank]
        ]
    assert straight[0][6]["images"] != straight[1][6]["images"]  # each rank its own share


PRETRAINED = ROOT / "artifacts" / "tiny-pretrained"


@pytest.mark.slow
def test_frozen_weights_in_bf16_keep_no_float32_host_copy_on_any_rank(tmp_path, phantom_root):
    """LoRA on the tiny pretrained pipeline under bf16-mixed, two ranks: the frozen U-Net, VAE and text
    encoder are bf16 during the fit, and no rank holds a float32 copy of them on the host (their source
    is read again at the end of the fit)."""
    args = fit_args(
        tmp_path, phantom_root, *DDP, "--trainer.precision", "bf16-mixed", "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "0",
        "--model.init_args.components.pretrained_model_name_or_path", str(PRETRAINED),
        *[arg for key in ("vae_config", "unet_config", "text_encoder_config", "tokenizer_name_or_path")
          for arg in (f"--model.init_args.components.{key}", "null")],
        "--model.init_args.trainable", '{"unet_lora": {"lr": 1e-3}}',
        "--model.init_args.lora", '{"unet": {"rank": 2, "alpha": 2.0}}',
        "--data.init_args.image_size", "64",
        *callback("_rank_probe.RankHostMemory", out_dir=str(tmp_path / "memory")),
    )  # fmt: skip
    run_ddp(args)
    ranks = outcomes(tmp_path / "memory")
    print("host memory per rank:", json.dumps(ranks))  # docs/ddp.md quotes these
    for rank in ranks:
        assert rank["frozen_dtypes"] == ["torch.bfloat16"]
        assert rank["frozen_param_bytes"] == 2 * rank["frozen_params"]
        # a float32 copy would be 4 bytes a frozen parameter; a few stray small tensors may share a shape
        assert rank["float32_copy_bytes"] < 0.01 * 4 * rank["frozen_params"]
