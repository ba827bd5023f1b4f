"""The augmentation experiment end to end at toy scale: every arm, every output, and resumability."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from _tiny_run import TINY, cli_args

from cxr_ldm.__main__ import main
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.synthetic_augmentation import (
    AugmentationConfig,
    ClassifierSettings,
    DiffusionSettings,
    SynthesisSettings,
    condition_parts,
    plan_arms,
    run_experiment,
)


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


def test_augmentation_end_to_end_and_resume(tmp_path: Path, phantom_root: Path, tiny_fit: Path) -> None:
    config = toy_config(tmp_path / "augment", phantom_root, tiny_fit / "checkpoints" / "last.ckpt")
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


def test_a_diffusion_model_of_another_kind_is_refused_before_any_arm_trains(
    tmp_path: Path, phantom_root: Path
) -> None:
    """`diffusion.model` holding a classifier was found when the first synthetic set was drawn, after the real
    arms had trained, under the name `--model`. The config's check refuses it first, under its own key."""
    import torch

    classifier = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {"net.features.conv0.weight": torch.zeros(1)}}, classifier)
    with pytest.raises(
        ConfigError, match=f"diffusion.model: {classifier} holds a CxrClassifier, not a LatentDiffusion"
    ):
        toy_config(tmp_path / "out", phantom_root, classifier).validate()
    with pytest.raises(ConfigError, match="diffusion.model .* is a directory without model_index.json"):
        toy_config(tmp_path / "out", phantom_root, tmp_path).validate()


def test_callback_validates_its_settings() -> None:
    from cxr_ldm.callbacks.augmentation_experiment import AugmentationExperiment

    callback = AugmentationExperiment(
        data=str(TINY), sizes=[4], conditions=["real", "synthetic_2x"], seeds=[0]
    )
    assert callback.config.synthetic_multiples() == [2]
    with pytest.raises(ConfigError, match="conditions"):
        AugmentationExperiment(data=str(TINY), conditions=["synthetic"])


def test_per_size_finetune_trains_on_exactly_the_subset_and_is_reused(
    tmp_path: Path, phantom_root: Path
) -> None:
    config = toy_config(tmp_path / "augment", phantom_root, tmp_path / "unused.ckpt")
    config.sizes, config.conditions = [8], ["real", "synthetic_1x"]
    config.diffusion = DiffusionSettings(
        finetune_config=str(TINY),
        finetune_args=["--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false"],
    )
    first = run_experiment(config)
    run_dir = tmp_path / "augment" / "finetune" / "size8"
    done = json.loads((run_dir / "finetune-done.json").read_text())
    last = run_dir / "checkpoints" / "last.ckpt"
    assert done["size"] == 8 and Path(done["checkpoint"]) == last
    import torch

    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 2
    # The fine-tune read the experiment's subset of 8 images (its config, as Lightning saved it, says so).
    saved = [yaml.safe_load(path.read_text()) for path in run_dir.rglob("config.yaml")]
    assert saved and all(c["data"]["init_args"]["max_images"] == {"train": 8} for c in saved)
    assert sorted(first.computed) == ["size8/real/seed0", "size8/synthetic_1x/seed0"]
    # Rerun: the finished fine-tune and both arms are reused, nothing retrains.
    stamp = last.stat().st_mtime_ns
    second = run_experiment(config)
    assert not second.computed and last.stat().st_mtime_ns == stamp


def test_callback_runs_the_experiment_at_the_end_of_fit(tmp_path: Path, phantom_root: Path) -> None:
    overlay = tmp_path / "augment-callback.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "callbacks": [
                        {"class_path": "cxr_ldm.callbacks.RunCheckpoint", "init_args": {"save_last": True}},
                        {
                            "class_path": "cxr_ldm.callbacks.AugmentationExperiment",
                            "init_args": {
                                "data": str(TINY),
                                "data_overrides": {
                                    "root": str(phantom_root),
                                    "cache_dir": str(tmp_path / "cache"),
                                },
                                "sizes": [8],
                                "conditions": ["real", "real+synthetic_1x"],
                                "seeds": [0],
                                "classifier": {
                                    "image_size": 32,
                                    "growth_rate": 4,
                                    "block_config": [1, 1],
                                    "num_init_features": 8,
                                    "steps": 3,
                                    "batch_size": 8,
                                    "accelerator": "cpu",
                                },
                                "synthesis": {"num_inference_steps": 2, "batch_size": 32},
                            },
                        },
                    ]
                }
            }
        )  # fmt: skip
    )
    run = tmp_path / "run"
    assert (
        main(cli_args([TINY, overlay], run, phantom_root, tmp_path / "cache", "--trainer.max_steps", "2"))
        == 0
    )
    results = json.loads((run / "augment" / "results.json").read_text())
    assert {row["condition"] for row in results["summary"]} == {"real", "real+synthetic_1x"}
    # The synthetic set was drawn by the model just trained: 8 prompts of the subset, one image each.
    metadata = next((run / "augment").rglob("metadata.csv"))
    assert len(metadata.read_text().strip().splitlines()) == 1 + 8


def test_results_chart_bars_are_the_means_with_std_error_bars(tmp_path: Path) -> None:
    import math

    from matplotlib.container import BarContainer
    from PIL import Image

    from cxr_ldm.experiments.synthetic_augmentation.results import bar_chart, write_outputs

    arms = [(16, "real", 0, 0.6), (16, "real", 1, 0.8), (16, "synthetic_1x", 0, 0.5), (32, "real", 0, 0.9)]
    results = [
        {"size": s, "condition": c, "seed": seed, "train_images": s, "metrics": {"auroc": v}}
        for s, c, seed, v in arms
    ]
    paths = write_outputs(tmp_path, results, [], [16, 32], ["real", "synthetic_1x"])
    with Image.open(paths["plot"]) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 200
    rows = json.loads(paths["json"].read_text())["summary"]
    axes = bar_chart(rows, [16, 32], ["real", "synthetic_1x"]).axes[0]
    real, synthetic = [c for c in axes.containers if isinstance(c, BarContainer)]
    assert [round(p.get_height(), 6) for p in real] == [0.7, 0.9]
    assert [round(p.get_height(), 6) for p in synthetic] == [0.5]  # no n=32 synthetic arm: no bar
    whisker = real.errorbar.lines[2][0].get_segments()[0]  # ± sample sd over the two seeds of n=16 real
    assert whisker[:, 1] == pytest.approx([0.7 - 0.1 * 2**0.5, 0.7 + 0.1 * 2**0.5])  # values 0.6 and 0.8
    assert not any(math.isnan(p.get_height()) for p in real + synthetic)


def test_a_rerun_computes_again_only_the_arms_whose_inputs_changed(
    tmp_path: Path, phantom_root: Path, tiny_fit: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = toy_config(tmp_path / "augment", phantom_root, tiny_fit / "checkpoints" / "last.ckpt")
    config.sizes, config.conditions = [8], ["real", "synthetic_1x"]
    first = run_experiment(config)
    assert sorted(first.computed) == ["size8/real/seed0", "size8/synthetic_1x/seed0"]
    record = tmp_path / "augment" / "synthetic" / "size8" / "generation.json"
    assert json.loads(record.read_text())["guidance_scale"] == config.synthesis.guidance_scale

    # another sampler: the synthetic set is drawn again and its arm recomputed; the real arm is reused
    config.synthesis.guidance_scale = 7.0
    second = run_experiment(config)
    assert second.computed == ["size8/synthetic_1x/seed0"] and second.reused == ["size8/real/seed0"]
    assert json.loads(record.read_text())["guidance_scale"] == 7.0

    # another classifier budget: every arm, none averaged with arms of the old budget
    config.classifier.steps = 4
    third = run_experiment(config)
    assert sorted(third.computed) == ["size8/real/seed0", "size8/synthetic_1x/seed0"]
    assert all(row["steps"] == 4 for row in third.results)

    # a result an older version wrote (no inputs recorded) is reused, and the run says so
    arm = plan_arms(config)[0]
    older = json.loads(arm.result_path(config.out).read_text())
    del older["inputs"]
    arm.result_path(config.out).write_text(json.dumps(older))
    with caplog.at_level("WARNING"):
        fourth = run_experiment(config)
    assert not fourth.computed and "record no inputs" in caplog.text


def test_a_finetune_whose_data_selects_other_images_names_the_size(
    tmp_path: Path, phantom_root: Path
) -> None:
    from cxr_ldm.experiments.synthetic_augmentation.finetune import finetune_for_size

    overrides = {"root": str(phantom_root), "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(ConfigError, match="for size 8;"):
        finetune_for_size(str(TINY), tmp_path / "finetune", 8, overrides, {}, ["not-an-image-of-the-subset"])


def test_an_unreadable_image_leaves_the_subset_one_short_and_its_selection_whole(
    tmp_path: Path, phantom_root: Path
) -> None:
    """Under `bad_sample_policy: skip` the subset's readable images go on without the bad one, while the
    selection a fine-tune is checked against stays the data module's own."""
    import shutil

    from cxr_ldm.experiments.synthetic_augmentation.subsets import real_subset

    root = tmp_path / "phantom"
    shutil.copytree(phantom_root, root)
    overrides = {"root": str(root), "cache_dir": str(tmp_path / "cache")}
    images, selected = real_subset(str(TINY), overrides, 32, 8)
    bad = next(p for p in root.glob("files/**/*.jpg") if p.stem == images.ids[0])
    bad.write_bytes(b"not a jpeg")
    again, selected_again = real_subset(
        str(TINY), {**overrides, "cache_dir": str(tmp_path / "cache2")}, 32, 8
    )
    assert len(again) == 7 and images.ids[0] not in again.ids and selected_again == selected


def test_a_model_in_memory_is_known_by_its_weights(tiny_fit: Path) -> None:
    from cxr_ldm.experiments.synthetic_augmentation.arm_inputs import weights_digest
    from cxr_ldm.models import LatentDiffusion

    last = tiny_fit / "checkpoints" / "last.ckpt"
    first, second = (LatentDiffusion.load_from_checkpoint(last, map_location="cpu") for _ in range(2))
    assert weights_digest(first) == weights_digest(second)
    with torch.no_grad():
        next(second.unet.parameters()).add_(1e-3)
    assert weights_digest(first) != weights_digest(second)
