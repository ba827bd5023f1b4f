"""One-off check: the new readers give what the old ones gave (old code read from git commit a32c5d5)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cxr_ldm.data.real_split import read_split
from cxr_ldm.generation.generated_folder import GenerationSettings, metadata_text, read_generated, save_png
from cxr_ldm.generation.prompt_source import PromptRecord
from cxr_ldm.loaders.datamodule import load_datamodule

ROOT = Path(__file__).resolve().parents[1]
OLD = "a32c5d5"


def old_module(path: str, name: str):
    source = subprocess.run(["git", "show", f"{OLD}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True)
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source.stdout, path, "exec"), module.__dict__)
    return module


def generated_folder(out: Path) -> Path:
    records = [
        PromptRecord("left effusion", {"Pleural Effusion": 1.0, "Edema": 0.0}),
        PromptRecord("", {}),
        PromptRecord("normal", {"No Finding": 1.0}),
    ]
    settings = GenerationSettings(per_prompt=3)
    rng = np.random.default_rng(0)
    for i in range(len(records) * settings.per_prompt):
        side = 40 if i % 2 else 32
        save_png(torch.from_numpy(rng.random((3, side, side), dtype=np.float32)), out / f"images/{i:06d}.png")
    (out / "metadata.csv").write_text(metadata_text(records, settings))
    return out


@pytest.mark.parametrize("per_prompt", [1, 2, 3])
def test_read_generated_matches_read_synthetic(tmp_path, per_prompt):
    folder = generated_folder(tmp_path)
    old = old_module("cxr_ldm/experiments/synthetic_augmentation/synthetic.py", "old_synthetic")
    was = old.read_synthetic(folder, per_prompt, 32)
    now = read_generated(folder, per_prompt=per_prompt, image_size=32)
    assert torch.equal(was.images, now.images) and now.images.dtype == torch.uint8
    assert torch.allclose(was.labels, now.labels, equal_nan=True)
    assert was.prompts == now.prompts and was.ids == now.ids
    assert len(now) == 3 * per_prompt


def test_read_generated_matches_old_read_generated(tmp_path):
    folder = generated_folder(tmp_path / "mixed")
    old = old_module("cxr_ldm/generation/generated_folder.py", "old_generated_folder")
    # The old reader stacks images of one size only: the same metadata over 32 px images.
    same_size = tmp_path / "same"
    for i in range(9):
        save_png(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)), same_size / f"images/{i:06d}.png")
    (same_size / "metadata.csv").write_text((folder / "metadata.csv").read_text())
    for limit in (None, 4):
        was, now = old.read_generated(same_size, limit), read_generated(same_size, limit=limit)
        assert torch.equal(was.images, now.pixels01())
        assert torch.allclose(was.labels, now.labels, equal_nan=True)
        assert was.prompts == now.prompts and was.prompt_index == now.prompt_index
        assert len(now) == (limit or 9)
    assert now.prompt_index == [0, 0, 0, 1]


@pytest.fixture(scope="module")
def datamodule_yaml(phantom_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("split")
    config = {
        "class_path": "cxr_ldm.data.MimicCxrDataModule",
        "init_args": {
            "root": str(phantom_root), "cache_dir": str(work / "cache"), "views": ["PA", "AP"],
            "max_chars": None, "no_finding_cap": None, "split": "seeded", "split_ratios": [0.6, 0.2, 0.2],
            "image_size": 48, "channels": 3, "batch_size": 8, "num_workers": 0,
        },
    }
    path = work / "data.yaml"
    path.write_text(yaml.safe_dump({"data": config}))
    return path


@pytest.mark.parametrize("limit", [None, 7])
def test_read_split_matches_load_real_split(datamodule_yaml, limit):
    old = old_module("cxr_ldm/evaluation/real_data.py", "old_real_data")
    was = old.load_real_split(load_datamodule(datamodule_yaml), "test", limit, seed=3)
    now = read_split(load_datamodule(datamodule_yaml), "test", limit, seed=3)
    assert torch.allclose(was.images, now.pixels01(), atol=1e-6, rtol=0)
    assert torch.allclose(was.labels, now.labels, equal_nan=True)
    assert was.prompts == now.prompts and was.reports == now.reports


def test_read_split_matches_old_read_split(datamodule_yaml):
    old = old_module("cxr_ldm/experiments/synthetic_augmentation/subsets.py", "old_subsets")
    module = load_datamodule(datamodule_yaml)
    module.setup()
    was, now = old.read_split(module, "train"), read_split(module, "train")
    assert torch.equal(was.images, now.images)
    assert torch.allclose(was.labels, now.labels, equal_nan=True)
    assert was.prompts == now.prompts and was.ids == now.ids
