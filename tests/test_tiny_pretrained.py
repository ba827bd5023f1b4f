"""The tiny pretrained pipeline built by three `fit` configs (cxr_ldm.training.tiny_pretrained), toy budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline
from transformers import CLIPTextModel

from cxr_ldm.errors import ConfigError
from cxr_ldm.training.fit import build_run
from cxr_ldm.training.tiny_pretrained import TEXT_STAGE_CONFIG, VAE_STAGE_CONFIG, build_tiny_pretrained

BUDGET = {"studies": 40, "vae_steps": 3, "unet_steps": 3, "text_steps": 3, "batch_size": 8, "seed": 0}
CAPTIONS = {"a pa chest x-ray", "a ap chest x-ray"}


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "checkpoints").glob("*.ckpt"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """Stages 0 and 1 alone (a build stopped between the stages), then the whole build: only stage 2 runs."""
    root = tmp_path_factory.mktemp("tiny-pretrained")
    work, out = root / "work", root / "out"
    first = build_tiny_pretrained(out, work, **BUDGET, stop_after="vae")
    stage1 = work / first["vae_stage"]["folder"]
    stage1_checkpoints = mtimes(stage1)
    info = build_tiny_pretrained(out, work, **BUDGET)
    return {"work": work, "out": out, "first": first, "info": info, "stage1": stage1,
            "stage1_checkpoints": stage1_checkpoints, "stage2": work / info["unet_stage"]["folder"],
            "stage0": work / info["text_stage"]["folder"]}  # fmt: skip


def test_a_build_stopped_between_stages_reruns_only_stage_2(built: dict) -> None:
    assert built["first"]["ran"] == ["text", "vae"] and "unet_stage" not in built["first"]
    assert built["info"]["ran"] == ["unet"]
    assert built["stage1_checkpoints"] and mtimes(built["stage1"]) == built["stage1_checkpoints"]
    assert (built["stage1"] / "done.json").is_file() and (built["stage2"] / "done.json").is_file()


def test_the_export_loads_in_diffusers_and_samples_64_px(built: dict) -> None:
    pipeline = StableDiffusionPipeline.from_pretrained(built["out"], safety_checker=None)
    pipeline.set_progress_bar_config(disable=True)
    assert type(pipeline.scheduler).__name__ == "DDIMScheduler"
    images = pipeline(
        "a pa chest x-ray",
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert images.shape == (1, 64, 64, 3) and bool((images >= 0).all() and (images <= 1).all())
    assert pipeline.vae.config.scaling_factor == pytest.approx(
        built["info"]["vae_stage"]["latent_scale"], abs=1e-4
    )


def test_the_pipeline_vae_is_stage_1s_trained_vae(built: dict) -> None:
    exported = AutoencoderKL.from_pretrained(built["out"], subfolder="vae").state_dict()
    checkpoint = torch.load(
        built["stage1"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["global_step"] == BUDGET["vae_steps"]
    trained = {k.removeprefix("vae."): v for k, v in checkpoint["state_dict"].items() if k.startswith("vae.")}
    assert trained.keys() == exported.keys()
    assert all(torch.equal(trained[k], exported[k]) for k in trained)
    # The stage-1 config, built without running (same seed): its initial VAE differs from the trained one.
    overrides = {"data.init_args.root": str(built["work"]), "seed_everything": BUDGET["seed"]}
    initial = build_run([VAE_STAGE_CONFIG], overrides).model.vae.state_dict()
    assert initial.keys() == exported.keys()
    assert not all(torch.equal(initial[k], exported[k]) for k in initial)


def test_the_pipeline_text_encoder_is_stage_0s_language_model_left_frozen_by_stage_2(built: dict) -> None:
    exported = CLIPTextModel.from_pretrained(built["out"], subfolder="text_encoder").state_dict()
    learnt = CLIPTextModel.from_pretrained(built["stage0"] / "language_model").state_dict()
    assert exported.keys() == learnt.keys()
    assert all(torch.equal(exported[k], learnt[k]) for k in exported)
    checkpoint = torch.load(
        built["stage0"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["global_step"] == BUDGET["text_steps"]
    # Stage 0 trained it: its initial encoder (same config, same seed) differs.
    initial = build_run(
        [TEXT_STAGE_CONFIG], {"seed_everything": BUDGET["seed"]}
    ).model.text_encoder.state_dict()
    assert not all(torch.equal(initial[k], learnt[k]) for k in learnt)


def test_pretrain_json_records_the_build(built: dict) -> None:
    recorded = json.loads((built["out"] / "pretrain.json").read_text())
    assert recorded == built["info"]
    assert recorded["phantom_seed"] == 1 and recorded["studies"] == BUDGET["studies"]
    assert set(recorded["unet_stage"]["captions"]) <= CAPTIONS
    assert sum(recorded["unet_stage"]["captions"].values()) == recorded["images"] > 0
    assert recorded["vae_stage"]["steps"] == recorded["unet_stage"]["steps"] == 3
    assert recorded["vae_stage"]["config"] == "configs/pretrain/tiny-vae.yaml"
    text = recorded["text_stage"]
    assert text["config"] == "configs/pretrain/tiny-text.yaml" and text["steps"] == BUDGET["text_steps"]
    assert text["sentences"]["train"] > 20_000 and text["vocabulary"] > 1_000 and text["train_loss"] > 0


def test_a_second_build_reuses_both_stages(built: dict) -> None:
    stage2_checkpoints = mtimes(built["stage2"])
    again = build_tiny_pretrained(built["out"], built["work"], **BUDGET)
    assert again["ran"] == []
    assert (
        mtimes(built["stage1"]) == built["stage1_checkpoints"]
        and mtimes(built["stage2"]) == stage2_checkpoints
    )
    assert (
        again["vae_stage"] == built["info"]["vae_stage"]
        and again["text_stage"] == built["info"]["text_stage"]
        and again["unet_stage"] == built["info"]["unet_stage"]
    )
    assert (built["out"] / "model_index.json").is_file()
    # Other budgets are another stage 2 (its own folder); stage 1 is still reused.
    other = build_tiny_pretrained(built["out"], built["work"], **{**BUDGET, "unet_steps": 2})
    assert other["ran"] == ["unet"] and other["unet_stage"]["folder"] != built["info"]["unet_stage"]["folder"]
    assert mtimes(built["stage1"]) == built["stage1_checkpoints"]


def test_autoencoder_one_cycle_schedule_and_its_errors() -> None:
    from lightning import Trainer

    from cxr_ldm.errors import ConfigError
    from cxr_ldm.models import Autoencoder
    from cxr_ldm.training.config_files import composed

    vae_config = composed(VAE_STAGE_CONFIG)["model"]["init_args"]["vae_config"]
    model = Autoencoder(vae_config=vae_config, lr=1e-3, lr_scheduler="cosine", lr_warmup_steps=2)
    model.trainer = Trainer(
        max_steps=10, max_epochs=-1, logger=False, accelerator="cpu", enable_progress_bar=False
    )
    configured = model.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert configured["lr_scheduler"]["interval"] == "step"
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0.0 and rates[2] == pytest.approx(1e-3) and rates[-1] < 1e-4
    assert all(a >= b for a, b in zip(rates[2:], rates[3:], strict=False))  # down after the warm-up
    with pytest.raises(ConfigError, match="lr_scheduler 'one-cycle'"):
        Autoencoder(vae_config=vae_config, lr_scheduler="one-cycle").configure_optimizers()
    with pytest.raises(ConfigError, match="lr_warmup_steps"):
        Autoencoder(vae_config=vae_config, lr_warmup_steps=-1)


def test_a_smaller_image_size_trains_its_own_stages_and_samples_at_that_size(built: dict, tmp_path) -> None:
    """`image_size` 32: both stages again under their own keys (the 64 px ones are left alone), the U-Net on
    8x8 latents, the export sampling 32 px images; a size the VAE and U-Net cannot halve is refused."""
    info = build_tiny_pretrained(tmp_path / "out32", built["work"], **BUDGET, image_size=32)
    assert info["ran"] == ["vae", "unet"] and info["image_size"] == 32
    assert info["vae_stage"]["folder"] != built["info"]["vae_stage"]["folder"]
    pipeline = StableDiffusionPipeline.from_pretrained(tmp_path / "out32", safety_checker=None)
    pipeline.set_progress_bar_config(disable=True)
    assert pipeline.unet.config.sample_size == 8
    images = pipeline("a pa chest x-ray", num_inference_steps=2, output_type="np",
                      generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert images.shape == (1, 32, 32, 3)
    with pytest.raises(ConfigError, match="image_size 36"):
        build_tiny_pretrained(tmp_path / "bad", built["work"], **BUDGET, image_size=36)
