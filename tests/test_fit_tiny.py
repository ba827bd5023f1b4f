"""End-to-end `fit` on tiny components: freezing contract, resume, non-finite losses, TensorBoard output."""

from __future__ import annotations

import shutil

import pytest
import torch
from _tiny_run import TINY, cli_args, fit_args, load_state, run_fit
from lightning import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cxr_ldm.__main__ import main
from cxr_ldm.models import LatentDiffusion


@pytest.fixture(scope="module")
def trained(tiny_fit):
    return tiny_fit, tiny_fit / "checkpoints"


def test_frozen_components_unchanged_trained_changed(trained):
    run, checkpoints = trained
    start = load_state(checkpoints / "epoch=0-step=2.ckpt")["state_dict"]
    end = load_state(checkpoints / "last.ckpt")["state_dict"]
    assert load_state(checkpoints / "last.ckpt")["global_step"] == 4
    frozen = [k for k in end if k.startswith(("vae.", "text.encoder."))]
    trained_keys = [k for k in end if k.startswith("unet.")]
    assert frozen and trained_keys
    for key in frozen:
        assert torch.equal(start[key], end[key]), key
    assert any(not torch.equal(start[k], end[k]) for k in trained_keys)
    # a frozen component is stored once: no EMA shadow and no optimizer state for it
    assert not any(k.startswith("ema.") and "vae" in k for k in end)


def test_optimizer_holds_only_trained_parameters(trained):
    _, checkpoints = trained
    checkpoint = load_state(checkpoints / "last.ckpt")
    model = LatentDiffusion.load_from_checkpoint(checkpoints / "last.ckpt", map_location="cpu")
    unet_params = sum(1 for p in model.unet.parameters())
    (optimizer,) = checkpoint["optimizer_states"]
    assert [g["name"] for g in optimizer["param_groups"]] == ["unet"]
    assert len(optimizer["param_groups"][0]["params"]) == unet_params
    assert len(optimizer["state"]) == unet_params
    assert len(checkpoint["ema"]["shadows"]) == unet_params
    assert all(name.startswith("unet.") for name in checkpoint["ema"]["shadows"])
    assert not any(k.startswith("ema.") for k in checkpoint["state_dict"])  # no module buffers (DDP)


class _Probe(Callback):
    """Records the state a resumed run starts from."""

    def on_train_start(self, trainer, pl_module):
        self.global_step = trainer.global_step
        self.ema_updates = int(pl_module.ema.num_updates)
        self.ema_first = pl_module.ema.shadows()[0].clone()
        optimizer = trainer.optimizers[0]
        self.adam_step = int(next(iter(optimizer.state.values()))["step"])
        self.unet_training = pl_module.unet.training
        self.vae_training = pl_module.vae.training
        self.text_training = pl_module.text.encoder.training


def test_resume_continues_step_ema_and_optimizer(tmp_path, phantom_root, monkeypatch):
    run = tmp_path / "run"
    checkpoints = run_fit(run, phantom_root, "--trainer.max_steps", "2")
    saved = load_state(checkpoints / "last.ckpt")
    probe = _Probe()
    import cxr_ldm.training.lightning_cli as cli

    original = cli.CxrLdmCLI.before_fit if hasattr(cli.CxrLdmCLI, "before_fit") else None

    def add_probe(self):
        self.trainer.callbacks.append(probe)
        if original:
            original(self)

    monkeypatch.setattr(cli.CxrLdmCLI, "before_fit", add_probe, raising=False)
    assert main(fit_args(run, phantom_root, "--trainer.max_steps", "4", "--ckpt_path", "last")) == 0
    assert probe.global_step == 2
    assert probe.ema_updates == saved["ema"]["num_updates"] == 2
    assert torch.equal(probe.ema_first, next(iter(saved["ema"]["shadows"].values())))
    assert probe.adam_step == 2
    assert probe.unet_training and not probe.vae_training and not probe.text_training
    final = load_state(checkpoints / "last.ckpt")
    assert final["global_step"] == 4
    assert final["ema"]["num_updates"] == 4


def test_fit_and_validate_take_a_checkpoint_file_as_ckpt_path(tmp_path, phantom_root, tiny_fit):
    """`--ckpt_path FILE` (not only `last`): the fit goes on from that file's step, validate reads it."""
    copy = tmp_path / "elsewhere" / "step4.ckpt"
    copy.parent.mkdir()
    shutil.copy(tiny_fit / "checkpoints" / "last.ckpt", copy)
    run = tmp_path / "run"
    assert main(fit_args(run, phantom_root, "--trainer.max_steps", "5", "--ckpt_path", str(copy))) == 0
    assert load_state(run / "checkpoints" / "last.ckpt")["global_step"] == 5
    validate = ["validate", *fit_args(run, phantom_root)[1:], "--ckpt_path", str(copy)]
    assert main(validate) == 0


def test_a_cut_short_checkpoint_given_as_ckpt_path_is_refused_in_one_line(
    tmp_path, phantom_root, tiny_fit, capsys
):
    """A copy cut short reached Lightning's loader and ended in a torch RuntimeError traceback."""
    whole = (tiny_fit / "checkpoints" / "last.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole[: len(whole) // 2])
    assert (
        main(fit_args(tmp_path / "run", phantom_root, "--trainer.max_steps", "5", "--ckpt_path", str(cut)))
        == 2
    )
    err = capsys.readouterr().err
    assert "cut.ckpt could not be read as a PyTorch checkpoint" in err and "Traceback" not in err


def test_a_checkpoint_of_another_shape_is_refused_by_name(tiny_fit):
    """A resume with another unet_config ended in a tensor size RuntimeError inside the EMA's load."""
    from cxr_ldm.errors import ConfigError
    from cxr_ldm.models import LatentDiffusion

    checkpoint = tiny_fit / "checkpoints" / "last.ckpt"
    components = dict(load_state(checkpoint)["hyper_parameters"]["components"])
    components["unet_config"] = {**components["unet_config"], "block_out_channels": [32, 32]}
    with pytest.raises(ConfigError, match=r"has shape .* it was trained with another model config"):
        LatentDiffusion.load_from_checkpoint(checkpoint, components=components, weights_only=True)


def test_a_fit_started_again_in_the_same_folder_leaves_its_own_state_in_last_ckpt(tmp_path, phantom_root):
    """The second fit's final state went to last-v1.ckpt; last.ckpt, which export reads, kept the first's."""
    run = tmp_path / "run"
    assert main(fit_args(run, phantom_root, "--trainer.max_steps", "2")) == 0
    assert main(fit_args(run, phantom_root, "--trainer.max_steps", "3")) == 0
    assert load_state(run / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert not list((run / "checkpoints").glob("last-v*.ckpt"))


def test_tensorboard_has_loss_lr_and_sample_grid(trained):
    run, _ = trained
    (events,) = run.glob("tensorboard/version_*/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    assert "train/loss" in tags["scalars"] and "val/loss" in tags["scalars"]
    assert any(tag.startswith("lr-") for tag in tags["scalars"])
    assert "samples/grid" in tags["images"]
    assert any("samples/prompts" in tag for tag in tags["tensors"])


def test_nonfinite_loss_stops_with_location(tmp_path, phantom_root):
    with pytest.raises(FloatingPointError, match=r"global step 0, batch 0 .*batch keys"):
        main(
            fit_args(
                tmp_path,
                phantom_root,
                "--trainer.max_steps",
                "3",
                "--model.init_args.objective.noise_offset",
                "1e39",
            )
        )


def test_nonfinite_loss_skip_policy_keeps_training(tmp_path, phantom_root):
    args = fit_args(
        tmp_path,
        phantom_root,
        "--model.init_args.objective.noise_offset",
        "1e39",
        "--model.init_args.objective.nonfinite_loss",
        "skip",
        "--trainer.max_steps",
        "2",
        "--trainer.max_epochs",
        "1",
    )
    assert main(args) == 0
    (events,) = tmp_path.glob("tensorboard/version_*/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    skipped = [event.value for event in accumulator.Scalars("train/nonfinite_steps_skipped")]
    assert skipped == [1.0, 2.0]
    assert "train/loss" not in accumulator.Tags()["scalars"]
    # skipped steps are no EMA updates
    assert load_state(tmp_path / "checkpoints" / "last.ckpt")["ema"]["num_updates"] == 0


def test_nonfinite_loss_skip_policy_stops_past_its_limit(tmp_path, phantom_root):
    args = fit_args(
        tmp_path, phantom_root, "--model.init_args.objective.noise_offset", "1e39", "--model.init_args.objective.nonfinite_loss", "skip",
        "--model.init_args.objective.nonfinite_max_skips", "2", "--trainer.max_steps", "30",
    )  # fmt: skip
    with pytest.raises(
        FloatingPointError, match=r"3 steps skipped, more than model.init_args.objective.nonfinite_max_skips"
    ):
        main(args)


def test_v_prediction_min_snr_bf16_and_checkpointing_train(tmp_path, phantom_root):
    args = fit_args(
        tmp_path,
        phantom_root,
        "--model.init_args.components.prediction_type",
        "v_prediction",
        "--model.init_args.objective.snr_gamma",
        "5.0",
        "--model.init_args.speed.gradient_checkpointing",
        "true",
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.max_steps",
        "2",
    )
    assert main(args) == 0
    model = LatentDiffusion.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu")
    assert model.noise_scheduler.config.prediction_type == "v_prediction"
    assert model.unet.is_gradient_checkpointing


# finding_balanced (its own sampler, the same resumable loader) is the long check: make test-slow
@pytest.mark.parametrize("sampling", ["shuffle", pytest.param("finding_balanced", marks=pytest.mark.slow)])
def test_mid_epoch_resume_with_loader_workers_replays_the_batch_order(tmp_path, phantom_root, sampling):
    """One process, two DataLoader workers: stopped at step 10 (epoch 1, two batches in; epochs of 8
    batches) and resumed, a run trains on the images of one run straight to step 12, in the same order."""
    import json

    def run(folder, probe, steps, *extra):
        probe_arg = {"class_path": "_rank_probe.RankLossProbe", "init_args": {"out_dir": str(probe)}}
        args = fit_args(
            folder, phantom_root, "--trainer.limit_val_batches", "0", "--data.init_args.num_workers", "2",
            "--data.init_args.train_sampling", sampling,
            "--trainer.max_steps", str(steps), "--trainer.callbacks+", json.dumps(probe_arg), *extra,
        )  # fmt: skip
        assert main(args) == 0
        return [json.loads(line) for line in (probe / "rank0.jsonl").read_text().splitlines()]

    straight = run(tmp_path / "straight", tmp_path / "straight-probe", 12)
    first = run(tmp_path / "stopped", tmp_path / "first-probe", 10)
    resumed = run(tmp_path / "stopped", tmp_path / "resumed-probe", 12, "--ckpt_path", "last")
    assert [(row["epoch"], row["step"]) for row in resumed] == [(1, 11), (1, 12)]
    assert [row["images"] for row in first + resumed] == [row["images"] for row in straight]


def test_validation_samples_every_n_steps_log_grids_at_those_steps_only(tmp_path, phantom_root):
    """Validation at every step, pictures at every second step only."""
    samples = tmp_path / "samples.yaml"
    samples.write_text(
        "trainer:\n  callbacks:\n    - class_path: cxr_ldm.callbacks.ValidationSamples\n      init_args:\n"
        "        prompts: [normal]\n        num_inference_steps: 2\n        every_n_steps: 2\n"
    )
    run = tmp_path / "run"
    extra = ("--config", str(samples), "--trainer.max_steps", "4", "--trainer.val_check_interval", "1")
    assert main(cli_args([TINY], run, phantom_root, run / "cache", *extra)) == 0
    (events,) = run.glob("tensorboard/version_*/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    assert len(accumulator.Scalars("val/loss")) == 4  # validation ran at every step
    assert [image.step for image in accumulator.Images("samples/grid")] == [2, 4]
