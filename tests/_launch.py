"""A toy experiment for the launcher tests (one arm x two seeds at toy budgets, no retriever, no follow-up)
and the comparison of two results.json documents on every value but the wall times."""

from __future__ import annotations

import json
from pathlib import Path

from _tiny_run import ROOT
from test_experiment import UNET_TEXT


def toy_launch_args(tmp_path: Path, out: str, seeds: str = "[0, 1]", arms: list | None = None) -> list[str]:
    arms = arms or [{"name": "unet-text", "configs": UNET_TEXT}]
    return [
        "--config", str(ROOT / "configs/experiments/demo.yaml"),
        "--out", str(tmp_path / out), "--data.root", str(tmp_path / "phantom"), "--data.phantom.studies", "120",
        "--pretrained", str(ROOT / "artifacts/tiny-pretrained"), "--data.config",
        str(ROOT / "configs/experiments/_phantom/data.yaml"), "--arms", json.dumps(arms), "--seeds", seeds,
        "--steps", "2", "--evaluator.classifier.steps", "3", "--retriever.config", "null",
        "--protocol.probe_images", "2", "--protocol.test_prompts", "4", "--protocol.sample_steps", "2",
        "--protocol.batch_size", "8", "--protocol.fid_guidance", "null", "--augmentation", "null", "--convergence", "null",
        "--claims", json.dumps([{"id": "learns", "text": "t", "comparisons": [
            {"a": arms[0]["name"], "b": "baseline", "metric": "probe/cond_balanced_accuracy"}]}]),
    ]  # fmt: skip


def local_launcher(**settings) -> list[str]:
    """`--launcher` for submitit's local executor, polling fast."""
    return [
        "--launcher",
        json.dumps({"kind": "submitit", "cluster": "local", "poll_seconds": 0.5, **settings}),
    ]


def comparable(results: dict, out: Path) -> dict:
    """`results` without its wall times, its output folder written as `<out>`."""
    results = json.loads(json.dumps(results).replace(str(out), "<out>"))
    results.pop("times_s")
    for seeds in results["arms"].values():
        for run in seeds.values():
            run.pop("seconds")
    return results
