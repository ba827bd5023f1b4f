"""The GPU check and the throughput benchmark run on a CPU with tiny shapes and skip the GPU-only parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check  # noqa: E402
import requirements_check  # noqa: E402


@pytest.mark.slow  # the whole GPU check script at tiny scale on CPU, run by hand with make test-slow
def test_gpu_check_tiny_writes_one_json_with_every_section(tmp_path):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--tiny", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "tiny"
    for variant in ("unet", "unet+text_encoder"):
        result = report["throughput"][variant]
        assert result["rounds"] == 2 and len(result["ratio_ours_over_plain"]["values"]) == 2
        assert result["ours_images_per_s"]["median"] > 0 and result["plain_images_per_s"]["median"] > 0
    if not torch.cuda.is_available():
        assert "skipped" in report["max_batch"] and "skipped" in report["peak_memory_batch8_gib"]
    assert report["sampling"]["pndm_6_s_per_image"] > 0 and report["sampling"]["dpm++_4_s_per_image"] > 0


def test_requirements_check_reads_pyproject_and_finds_nothing_missing_here():
    names = requirements_check.requirements()
    assert any(r.startswith("diffusers") for r in names) and any(
        "jsonargparse[signatures]" in r for r in names
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "requirements_check.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == ""
