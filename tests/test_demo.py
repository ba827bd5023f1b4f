"""`python -m cxr_ldm.demo` end to end at toy budgets, from the committed tiny pretrained pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _tiny_run import ROOT

from cxr_ldm.demo.run import ensure_phantom, main
from cxr_ldm.errors import ConfigError

PRETRAINED = ROOT / "artifacts" / "tiny-pretrained"


def test_demo_runs_end_to_end_and_reports(tmp_path: Path) -> None:
    out, data = tmp_path / "demo", tmp_path / "phantom"
    args = ["--out", str(out), "--data", str(data), "--pretrained", str(PRETRAINED), "--studies", "120",
            "--classifier-steps", "3", "--finetune-steps", "2", "--sample-steps", "2", "--probe-images", "2",
            "--aug-sizes", "8", "--aug-multiple", "2", "--aug-seeds", "1", "--test-prompts", "5",
            "--aug-classifier-steps", "2"]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    findings = ["Cardiomegaly", "Pleural Effusion", "Pneumothorax", "No Finding"]
    assert list(results["evaluator"]["thresholds"]) == findings
    assert results["probe_prompts"] == ["cardiomegaly", "pleural effusion", "pneumothorax", "normal"]
    assert results["test_prompts"] == 5 < results["test_images"]
    assert len(list((out / "generated-after" / "images").iterdir())) == 5
    assert len(list((out / "probe-after" / "images").iterdir())) == 4 * 2
    for stage in ("before", "after"):
        assert {f"cond_balanced_accuracy/{f}" for f in findings} <= set(results[stage]["probe"])
        assert results[stage]["fid_xrv"] >= 0 and math.isfinite(results[stage]["kid_xrv"])
        assert results[stage]["fidelity"]["guidance"] == 2.0 and results[stage]["fidelity"]["fid_xrv"] >= 0
    assert results["evaluator"]["validate_vs_test"]["fid_xrv"] >= 0  # the real-vs-real reference
    # The evaluator on real images reports the real-image names, on generated ones the conditioned names.
    assert {f"auroc/{f}" for f in findings} <= set(results["evaluator"]["real_test"])
    assert not any(key.startswith("cond_") for key in results["evaluator"]["vae_reconstructions"])
    assert len(list((out / "fidelity-after" / "images").iterdir())) == 5
    # The fine-tune trained from the latent cache the pretrained VAE built, and checkpointed.
    assert (out / "finetune" / "checkpoints" / "last.ckpt").is_file()
    assert any((out / "cache").rglob("*latent*"))
    report = (out / "report.md").read_text()
    for part in (
        "Does the evaluator see the finding",
        "CXR FID",
        "| KID, guidance 2.0 |",
        "Augmentation experiment",
        "probes.png",
    ):
        assert part in report, part
    for image in ("probes.png", "samples.png", "augment/results.png"):
        assert (out / image).stat().st_size > 0, image
    # A rerun with the same inputs reuses the fine-tune; other budgets clear what the old ones made.
    last = out / "finetune" / "checkpoints" / "last.ckpt"
    stamp = last.stat().st_mtime_ns
    assert main(args) == 0 and last.stat().st_mtime_ns == stamp
    steps = args.index("--finetune-steps") + 1
    assert main([*args[:steps], "3", *args[steps + 1 :]]) == 0
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 3


def test_demo_phantom_of_other_settings_is_made_anew(tmp_path: Path) -> None:
    data = tmp_path / "phantom"
    ensure_phantom(data, 60)
    manifest = data / "phantom-manifest.json"
    stamp = manifest.stat().st_mtime_ns
    ensure_phantom(data, 60)  # same settings: kept
    assert manifest.stat().st_mtime_ns == stamp
    ensure_phantom(data, 40)  # an earlier demo's size: made anew, never read stale
    assert json.loads(manifest.read_text())["params"]["studies"] == 40
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "phantom-manifest.json").write_text(json.dumps({"generator": "someone else"}))
    with pytest.raises(ConfigError, match="not a phantom made by cxr_ldm"):
        ensure_phantom(foreign, 40)
