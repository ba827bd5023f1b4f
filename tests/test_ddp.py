"""Two-process DDP on CPU (gloo) runs `fit` to the end through Lightning's own strategy."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from _tiny_run import ROOT, fit_args


def test_two_process_ddp_fit_runs_to_the_end(tmp_path, phantom_root):
    args = fit_args(tmp_path, phantom_root, "--trainer.strategy", "ddp", "--trainer.devices", "2")
    result = subprocess.run(
        [sys.executable, "-m", "cxr_ldm", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 4
    assert checkpoint["ema"]["num_updates"] == 4
    # rank zero alone wrote the resolved config
    assert len(list(tmp_path.glob("tensorboard/version_*/config.yaml"))) == 1
