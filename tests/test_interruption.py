"""A unit killed with SIGKILL and run again gives the results of a run straight through: the cheapest case of
scripts/interruption_check.py (docs/cluster.md, "Killed and run again"), at toy scale: the toy experiment's
fit killed after a checkpoint and resumed mid-fit, and its evaluation killed while drawing images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _launch import toy_launch_args
from _tiny_run import ROOT
from test_experiment import UNET_TEXT


@pytest.mark.slow  # 8 min wall (2.5 min CPU) on 2 loaded cores: five toy runs, two of them killed
def test_a_fit_and_an_evaluation_killed_and_rerun_give_the_straight_run_s_results(tmp_path: Path) -> None:
    # A checkpoint every 5 steps of 30, so that a kill lands mid-fit; the progress line every 5 steps.
    recipe = tmp_path / "checkpoint-every-5.yaml"
    recipe.write_text(
        "trainer.callbacks:\n"
        "  - {class_path: cxr_ldm.callbacks.RunCheckpoint,\n"
        "     init_args: {save_last: true, every_n_train_steps: 5, save_top_k: 0}}\n"
        "  - {class_path: cxr_ldm.callbacks.ProgressLog, init_args: {every_n_steps: 5}}\n"
    )
    arms = [{"name": "unet-text", "configs": [*UNET_TEXT, str(recipe)]}]
    args = toy_launch_args(tmp_path, "unused", seeds="[0]", arms=arms)
    for key in ("--config", "--out", "--steps"):  # the script's command gives these
        args = args[: args.index(key)] + args[args.index(key) + 2 :]
    work = tmp_path / "work"
    checked = subprocess.run(
        [sys.executable, str(ROOT / "scripts/interruption_check.py"), "--work", str(work), "--cases", "b", "c",
         "--steps", "30", "--kill-step", "10", "--eval-images", "1", "--extra", json.dumps(args)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    rows = json.loads((work / "summary-b-c.json").read_text())
    assert [row["case"] for row in rows] == ["b", "c"]
    for row in rows:
        assert row["numbers"] > 100 and row["numbers_differ"] == row["others_differ"] == 0, row
    assert "last.ckpt of step" in rows[0]["killed"] and "evaluation images" in rows[1]["killed"]
