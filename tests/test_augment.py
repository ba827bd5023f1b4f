"""The augmentation experiment end to end at toy scale: every arm, every output, and resumability."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxr_ldm.augmentation import (
    AugmentationConfig,
    ClassifierSettings,
    DiffusionSettings,
    SynthesisSettings,
    condition_parts,
    plan_arms,
    run_experiment,
)
from cxr_ldm.errors import ConfigError
from tests._tiny_run import TINY, run_fit


def toy_config(out: Path, phantom_root: Path, model: Path) -> AugmentationConfig:
    return AugmentationConfig(
        out=str(out),
        data=str(TINY),
        data_overrides={"root": str(phantom_root), "cache_dir": str(out.parent / "cache")},
        sizes=[8, 16],
        conditions=["real", "synthetic_1x", "synthetic_2x", "real+synthetic_1x"],
        seeds=[0],
        classifier=ClassifierSettings(
            image_size=32,
            growth_rate=4,
            block_config=[1, 1],
            num_init_features=8,
            steps=3,
            batch_size=8,
            accelerator="cpu",
        ),  # fmt: skip
        synthesis=SynthesisSettings(num_inference_steps=2, batch_size=32),
        diffusion=DiffusionSettings(model=str(model)),
    )


def test_augmentation_end_to_end_and_resume(tmp_path: Path, phantom_root: Path) -> None:
    checkpoints = run_fit(tmp_path / "ldm", phantom_root, "--trainer.max_steps", "2")
    config = toy_config(tmp_path / "augment", phantom_root, checkpoints / "last.ckpt")
    arms = plan_arms(config)
    assert len(arms) == 8

    first = run_experiment(config)
    assert sorted(first.computed) == sorted(a.name for a in arms) and not first.reused
    for arm in arms:
        result = json.loads(arm.result_path(config.out).read_text())
        assert result["steps"] == 3 and result["batch_size"] == 8  # equal budgets
        assert "accuracy" in result["metrics"]
    sizes = {
        a.condition: json.loads(a.result_path(config.out).read_text())["train_images"]
        for a in arms
        if a.size == 16
    }
    assert sizes == {"real": 16, "synthetic_1x": 16, "synthetic_2x": 32, "real+synthetic_1x": 32}
    for key in ("json", "table", "plot"):
        assert first.outputs[key].is_file(), key
    assert any((tmp_path / "augment" / "tensorboard").iterdir())
    summary = json.loads(first.outputs["json"].read_text())["summary"]
    assert len(summary) == 8

    victim = arms[5]
    victim.result_path(config.out).unlink()
    second = run_experiment(config)
    assert second.computed == [victim.name]
    assert len(second.reused) == 7


def test_conditions_are_validated() -> None:
    assert condition_parts("real+synthetic_5x") == [("real", 0), ("synthetic", 5)]
    for bad in ("fake", "synthetic_0x", "real+real"):
        with pytest.raises(ConfigError):
            condition_parts(bad)
    with pytest.raises(ConfigError, match="diffusion"):
        AugmentationConfig().validate()


def test_callback_validates_its_settings() -> None:
    from cxr_ldm.callbacks.augmentation_experiment import AugmentationExperiment

    callback = AugmentationExperiment(
        data=str(TINY), sizes=[4], conditions=["real", "synthetic_2x"], seeds=[0]
    )
    assert callback.config.synthetic_multiples() == [2]
    with pytest.raises(ConfigError, match="conditions"):
        AugmentationExperiment(data=str(TINY), conditions=["synthetic"])
