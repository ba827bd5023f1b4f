"""Real-scale correctness of `LatentDiffusion`, shown on tiny components: the prediction type reaches
sampling and export, Python-built models reload, checkpoints load with torch's weights_only=True."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from _tiny_run import ROOT, domain_encoder_init_args, run_fit, tiny_batches, tiny_init_args, tiny_trainer
from lightning import Callback

from cxr_ldm.__main__ import main
from cxr_ldm.generation.sampling import build_pipeline, sample
from cxr_ldm.models import LatentDiffusion
from cxr_ldm.models.lora import LoraSpec
from cxr_ldm.models.trainable import Trainable

PLAIN_V = """
import sys, json, torch
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1])
pipe.set_progress_bar_config(disable=True)
out = pipe("normal", num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0))
print(json.dumps({"prediction_type": pipe.scheduler.config.prediction_type, "shape": list(out.images.shape)}))
"""


def _v_prediction_fit(tmp_path, phantom_root) -> Path:
    return run_fit(
        tmp_path / "run", phantom_root, "--trainer.max_steps", "2", "--model.init_args.components.prediction_type",
        "v_prediction",
    )  # fmt: skip


def test_v_prediction_reaches_sampling(tmp_path, phantom_root):
    checkpoints = _v_prediction_fit(tmp_path, phantom_root)
    model = LatentDiffusion.load_from_checkpoint(checkpoints / "last.ckpt", map_location="cpu")
    assert model.noise_scheduler.config.prediction_type == "v_prediction"
    for name in ("pndm", "ddim", "dpm++", "euler", "unipc"):
        assert build_pipeline(model, name).scheduler.config.prediction_type == "v_prediction", name
    assert sample(model, ["normal"], [0], num_inference_steps=2).shape == (1, 3, 32, 32)


@pytest.mark.slow  # a plain-diffusers process (10 s); make test keeps tests/test_export.py's for epsilon
def test_v_prediction_export_samples_in_plain_diffusers(tmp_path, phantom_root):
    checkpoints = _v_prediction_fit(tmp_path, phantom_root)
    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(checkpoints / "last.ckpt"), "--out", str(out)]) == 0
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_V, str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "prediction_type": "v_prediction",
        "shape": [1, 32, 32, 3],
    }


def test_model_built_in_python_reloads_from_its_checkpoint(tmp_path):
    model = LatentDiffusion(
        **tiny_init_args(
            trainable={"unet_lora": Trainable(lr=1e-3, weight_decay=0.0)},
            lora={"unet": LoraSpec(rank=2, alpha=2.0)},
        )
    )
    trainer = tiny_trainer(tmp_path)
    trainer.fit(model, train_dataloaders=tiny_batches())
    path = tmp_path / "python.ckpt"
    trainer.save_checkpoint(path)
    torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    reloaded = LatentDiffusion.load_from_checkpoint(path, map_location="cpu")
    assert reloaded.trainable == {"unet_lora": Trainable(lr=1e-3, weight_decay=0.0)}
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key


class _RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it touches `marker` (stands for any code an attacker chooses)."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.utime.__self__.open, (str(self.marker), os.O_CREAT | os.O_WRONLY))


@pytest.mark.parametrize("command", ["export", "generate"])
def test_checkpoint_that_runs_code_is_refused(tmp_path, capsys, command):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "model.ckpt"
    state = {"unet.conv_in.weight": torch.zeros(1)}
    torch.save({"state_dict": state, "hyper_parameters": _RunsCodeWhenUnpickled(marker)}, evil)
    if command == "export":
        argv = ["export", "--ckpt", str(evil), "--out", str(tmp_path / "out")]
    else:
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("normal\n")
        argv = ["generate", "--model", str(evil), "--prompts", str(prompts), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert not marker.exists()
    error = capsys.readouterr().err
    assert str(evil) in error and "not opened" in error


def test_ema_is_no_module_buffer_and_counts_on_the_host():
    """DDP broadcasts module buffers every forward: the EMA shadows must not be among them."""
    model = LatentDiffusion(**tiny_init_args())
    assert model.ema is not None and len(model.ema.shadows()) == len(list(model.unet.parameters()))
    assert not any("shadow" in name or "ema" in name for name, _ in model.named_buffers())
    model.ema.update()
    assert model.ema.num_updates == 1 and isinstance(model.ema.num_updates, int)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host syncs are a CUDA matter")
def test_training_step_path_has_no_host_sync():
    model = LatentDiffusion(**tiny_init_args(snr_gamma=5.0)).cuda()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = next(iter(tiny_batches()))
    batch["pixel_values"] = batch["pixel_values"].cuda()
    model._shared_step(batch, "train").backward()  # warm-up: first-use copies of the schedule
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            loss = model._shared_step(batch, "train")
            model.nonfinite.note(loss, model.global_step, batch, 1)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            model.ema.update()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    model.nonfinite.check()  # the one sync, at a logging step: all losses were finite


def test_bert_padding_is_attended_nowhere(phantom_root):
    """The encoder's padding mask reaches the U-Net's cross-attention in training and in sampling: the
    amount of padding changes neither the loss nor the samples."""
    model = LatentDiffusion(**domain_encoder_init_args(ema_decay=None)).eval()
    batch = next(iter(tiny_batches()))
    losses, images = [], []
    for length in (12, 48):
        model.text.max_length = length
        with torch.no_grad():
            losses.append(model._shared_step(batch, "val", torch.Generator().manual_seed(0)))
        images.append(sample(model, ["pleural effusion", "normal"], [0, 1], num_inference_steps=2))
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(images[0], images[1], atol=1e-5, rtol=1e-4)


def test_validation_loss_is_reproducible_whatever_the_global_rng():
    model = LatentDiffusion(**tiny_init_args()).eval()
    batch = next(iter(tiny_batches()))
    losses = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # e.g. a different amount of training before this validation
        with torch.no_grad():
            losses.append(model._shared_step(batch, "val", torch.Generator().manual_seed(0)))
    assert torch.equal(losses[0], losses[1])


@pytest.mark.parametrize(
    "variant",
    [
        {"trainable": {"unet_lora": {"lr": 1e-3}}, "lora": {"unet": {"rank": 2}}},
        {"trainable": {"token_embeddings": {"lr": 1e-3}}, "textual_inversion": {}},
    ],
    ids=["unet-lora", "textual-inversion"],
)
def test_gradient_checkpointing_runs_where_gradients_pass(variant):
    """A frozen U-Net that gradients pass through is checkpointed: its blocks run again in backward."""
    model = LatentDiffusion(**tiny_init_args(gradient_checkpointing=True, **variant))
    assert model.unet.is_gradient_checkpointing
    text_calls = []
    if "textual_inversion" in variant:  # the frozen encoder under new token rows is checkpointed too
        assert model.text.encoder.is_activation_checkpointing
        model.text.encoder.encoder.layers[-1].mlp.register_forward_pre_hook(lambda *_: text_calls.append(1))
    calls = []
    model.unet.up_blocks[-1].resnets[0].register_forward_pre_hook(lambda *_: calls.append(1))
    loss = model._shared_step(next(iter(tiny_batches())), "train")
    assert len(calls) == 1
    loss.backward()
    assert len(calls) == 2  # recomputed in backward
    assert len(text_calls) == (2 if "textual_inversion" in variant else 0)
    assert not any(m.training for m in model.text.encoder.modules() if isinstance(m, torch.nn.Dropout))
    assert all(p.grad is not None for p in model.trained_named_parameters().values())


def test_resume_refuses_a_checkpoint_that_runs_code(tmp_path, phantom_root, monkeypatch, capsys):
    """`fit --ckpt_path` reads with weights_only=True even where torch's default is turned off (torch reads
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD at every load): the file is refused by name, before Lightning opens it,
    and its code never runs."""
    from _tiny_run import fit_args

    marker = tmp_path / "code-ran"
    (tmp_path / "checkpoints").mkdir()
    torch.save(
        {"state_dict": {}, "payload": _RunsCodeWhenUnpickled(marker)}, tmp_path / "checkpoints" / "last.ckpt"
    )
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    assert main(fit_args(tmp_path, phantom_root, "--ckpt_path", "last")) == 2
    assert "holds objects other than tensors and plain data, so it was not opened" in capsys.readouterr().err
    assert not marker.exists()
    torch.load(tmp_path / "checkpoints" / "last.ckpt")  # the same file read with the default turned off...
    assert marker.exists()  # ...runs the payload's code


def test_bert_mask_reaches_the_unet_from_worker_tokens_and_from_the_text_cache(tmp_path):
    """The three ways a batch's context is made (prompt strings, tokens collated in the DataLoader
    workers, the text-embedding cache) give the BERT padding mask to the U-Net alike: equal losses."""
    from cxr_ldm.data.prompt_tokens import PromptTokenizer
    from cxr_ldm.models.text_embedding_cache import TextEmbeddingCache, build_text_cache, cache_prompts

    model = LatentDiffusion(**domain_encoder_init_args(ema_decay=None)).eval()
    prompts = ["pleural effusion", "normal", "small left apical pneumothorax", ""]
    pixels = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batch = {"pixel_values": pixels, "prompt": prompts}

    def loss(b: dict) -> torch.Tensor:
        with torch.no_grad():
            return model._shared_step(b, "val", torch.Generator().manual_seed(0))

    from_strings = loss(batch)
    tokens = PromptTokenizer(model.text.tokenizer, model.text.max_length)(prompts)
    assert int(tokens["attention_mask"].sum()) < tokens["attention_mask"].numel()  # there is padding
    torch.testing.assert_close(loss({**batch, **tokens}), from_strings)
    build_text_cache(model.text, cache_prompts(prompts), tmp_path / "cache", torch.no_grad())
    model.text_cache = TextEmbeddingCache(tmp_path / "cache")
    try:
        torch.testing.assert_close(loss(batch), from_strings)
        # The cache's mask matters: without it the U-Net attends to padding and the loss moves.
        model.text.use_attention_mask = False
        assert not torch.allclose(loss(batch), from_strings)
    finally:
        model.text_cache = None
        model.text.use_attention_mask = True


# ----------------------------------------------------------------------------- review fixes
def test_checkpoint_saved_at_validation_end_is_checked_for_nonfinite_losses(tmp_path):
    """A checkpoint written at validation's end (ModelCheckpoint with validation) is checked like one written
    from a training hook: a non-finite step since the last logging step stops the run before it is saved."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    class DivergeAfterFirstStep(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            pl_module.objective = replace(
                pl_module.objective, noise_offset=1e39
            )  # step 0 (a logging step) is finite; step 1 is not

    model = LatentDiffusion(**tiny_init_args())
    trainer = tiny_trainer(
        tmp_path,
        max_steps=4,
        log_every_n_steps=50,  # step 1 is no logging step: nothing checks it before the save
        val_check_interval=2,
        limit_val_batches=1,
        enable_checkpointing=True,
        callbacks=[DivergeAfterFirstStep(), ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)],
    )
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        trainer.fit(model, tiny_batches(8), tiny_batches(2))
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing a non-finite step reached was written


def test_a_resumed_fit_keeps_counting_its_skipped_nonfinite_steps(tmp_path):
    """The count that `nonfinite_max_skips` limits goes on across a resume: 2 steps skipped before the
    checkpoint and 1 after are 3, as in the uninterrupted fit."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def fit(steps, ckpt_path=None):
        model = LatentDiffusion(
            **tiny_init_args(noise_offset=1e39, nonfinite_loss="skip", nonfinite_max_skips=100)
        )
        every = ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=1, save_top_k=-1)
        trainer = tiny_trainer(tmp_path, max_steps=steps, enable_checkpointing=True, callbacks=[every])
        trainer.fit(model, tiny_batches(8), ckpt_path=ckpt_path)
        return model

    assert fit(2).nonfinite.steps_skipped == 2
    assert fit(3, ckpt_path=tmp_path / "step=2.ckpt").nonfinite.steps_skipped == 3
    # weights loaded for a new fit (not a resume) start counting afresh
    loaded = LatentDiffusion.load_from_checkpoint(tmp_path / "step=2.ckpt", map_location="cpu")
    tiny_trainer(tmp_path / "new", max_steps=1).fit(loaded, tiny_batches(8))
    assert loaded.nonfinite.steps_skipped == 1


def test_model_fitted_again_starts_its_counts_afresh_and_a_failed_fit_leaves_it_whole(tmp_path):
    model = LatentDiffusion(
        **tiny_init_args(noise_offset=1e39, nonfinite_loss="skip", nonfinite_max_skips=100)
    )
    for _ in range(2):
        tiny_trainer(tmp_path, max_steps=2, max_epochs=1).fit(model, tiny_batches(4))
        assert model.nonfinite.steps_skipped == 2  # not 4: the second fit does not inherit the first's
    # A fit that raises under bf16-mixed gives the frozen weights back in float32 (teardown is not called).
    model = LatentDiffusion(**tiny_init_args(noise_offset=1e39))
    with pytest.raises(FloatingPointError):
        tiny_trainer(tmp_path, max_steps=4, precision="bf16-mixed", log_every_n_steps=1).fit(
            model, tiny_batches(8)
        )
    assert model.vae.dtype == torch.float32 and model.text.encoder.dtype == torch.float32
