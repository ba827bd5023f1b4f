"""Run a configs/finetune/*.yaml file for two steps with its tiny overrides (named in its `# tiny:` line)."""

from __future__ import annotations

from pathlib import Path

import torch
from _tiny_run import ROOT

from cxr_ldm.__main__ import main

FINETUNE = ROOT / "configs" / "finetune"
CONFIGS = sorted(FINETUNE.glob("*.yaml"))
DEFAULT_TINY = ["configs/overrides/tiny-components.yaml"]


def tiny_overrides(config: Path) -> list[Path]:
    """The overrides a config declares in its `# tiny: a.yaml b.yaml` header line."""
    for line in config.read_text().splitlines():
        if line.startswith("# tiny:"):
            return [ROOT / name for name in line.split(":", 1)[1].split()]
    return [ROOT / name for name in DEFAULT_TINY]


def variant_args(config: Path, run_dir: Path, data_root: Path, *extra: str) -> list[str]:
    args = ["fit", "--config", str(config)]
    for override in tiny_overrides(config):
        args += ["--config", str(override)]
    args += [
        "--data.init_args.root",
        str(data_root),
        "--data.init_args.cache_dir",
        str(run_dir.parent / "index-cache"),
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.logger.init_args.save_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]
    return args


def run_variant(config: Path, run_dir: Path, data_root: Path, *extra: str) -> Path:
    assert main(variant_args(config, run_dir, data_root, *extra)) == 0
    return run_dir


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)
