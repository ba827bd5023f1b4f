"""Settings that cannot be right, refused before any work with one line naming the option, key or file and
the fix: device names and devices this machine lacks, an InceptionV3 FID without its package, a model that
would train nothing or on a negative loss, and config files that hold no mapping."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from _tiny_run import ROOT, TINY, fit_args
from test_faults import _refused

PIPELINE = ROOT / "artifacts" / "tiny-pretrained"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
NO_GPU = pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU"
)


def _prompts(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\n")
    return prompts


def _generate(tmp_path, device: str) -> list[str]:
    return [
        "generate", "--model", str(PIPELINE), "--prompts", str(_prompts(tmp_path)), "--out", str(tmp_path / "o"),
        "--per-prompt", "1", "--steps", "1", "--no-progress", "--device", device,
    ]  # fmt: skip


# ---------------------------------------------------------------- devices
def test_generate_refuses_a_name_that_is_no_device(tmp_path, capsys):
    _refused(_generate(tmp_path, "gpu"), capsys, "--device 'gpu' is not a device", "cpu, cuda")
    assert not (tmp_path / "o").exists()


@NO_CUDA
def test_generate_refuses_cuda_on_a_machine_without_one(tmp_path, capsys):
    _refused(_generate(tmp_path, "cuda"), capsys, "--device cuda", "no CUDA device is available here", "cpu")
    assert not (tmp_path / "o").exists()


def test_evaluate_refuses_a_name_that_is_no_device(tmp_path, capsys):
    args = [
        "evaluate", "--generated", str(tmp_path / "generated"), "--data", str(TINY),
        "--classifier", str(tmp_path / "classifier.ckpt"), "--out", str(tmp_path / "o"), "--device", "gpu",
    ]  # fmt: skip
    _refused(args, capsys, "--device 'gpu' is not a device", "cpu, cuda")


def test_augment_refuses_a_synthesis_device_that_is_no_device(tmp_path, phantom_root, capsys):
    args = [
        "augment", "--out", str(tmp_path / "augment"), "--data", str(TINY),
        "--data_overrides", f'{{"root": "{phantom_root}", "cache_dir": "{tmp_path / "cache"}"}}',
        "--sizes", "[8]", "--conditions", '["synthetic_1x"]', "--seeds", "[0]", "--classifier.steps", "1",
        "--classifier.accelerator", "cpu", "--diffusion.model", str(PIPELINE), "--synthesis.device", "gpu",
    ]  # fmt: skip
    _refused(args, capsys, "synthesis.device 'gpu' is not a device", "cpu, cuda")
    assert not (tmp_path / "augment" / "synthetic").exists()


@NO_GPU
def test_fit_refuses_the_gpu_accelerator_on_a_machine_without_one(tmp_path, phantom_root, capsys):
    args = fit_args(tmp_path, phantom_root, "--trainer.accelerator", "gpu")
    _refused(args, capsys, "trainer.accelerator gpu", "no GPU", "--trainer.accelerator cpu", "auto")
    assert not (tmp_path / "checkpoints").exists()


def test_fit_names_the_trainer_section_when_lightning_refuses_a_trainer_setting(
    tmp_path, phantom_root, capsys
):
    _refused(
        fit_args(tmp_path, phantom_root, "--trainer.devices", "0"),
        capsys,
        "trainer: `Trainer(devices=",
        "--trainer",
    )
    assert not (tmp_path / "checkpoints").exists()


# ---------------------------------------------------------------- InceptionV3 FID
@pytest.mark.skipif(
    importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed"
)
def test_evaluate_refuses_inception_weights_without_torch_fidelity_before_any_work(tmp_path, capsys):
    weights = tmp_path / "pt_inception-2015-12-05.pth"
    weights.write_bytes(b"weights")
    args = [
        "evaluate", "--generated", str(tmp_path / "generated"), "--data", str(TINY),
        "--classifier", str(tmp_path / "classifier.ckpt"), "--out", str(tmp_path / "o"),
        "--inception-weights", str(weights), "--device", "cpu",
    ]  # fmt: skip
    _refused(args, capsys, f"--inception-weights {weights}", "pip install torch-fidelity")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- the model's settings
def test_fit_refuses_a_trainable_that_names_no_component(tmp_path, phantom_root, capsys):
    args = fit_args(tmp_path, phantom_root, "--model.init_args.trainable", "{}")
    _refused(args, capsys, "model.init_args.trainable names no component", "'unet'", "'text_encoder'")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("value", ["-1", "0", ".nan"])
def test_fit_refuses_an_snr_gamma_that_is_not_positive(tmp_path, phantom_root, capsys, value):
    args = fit_args(
        tmp_path, phantom_root, "--model.init_args.objective.snr_gamma", value, "--trainer.max_steps", "1"
    )
    _refused(args, capsys, "model.init_args.objective.snr_gamma", "> 0")
    assert not (tmp_path / "checkpoints").exists()


# ---------------------------------------------------------------- config files
CONFIGS_WITHOUT_A_MAPPING = {
    "empty": ("", "is empty"),
    "comment-only": ("# nothing set yet\n", "is empty"),
    "list": ("- a\n- b\n", "holds a YAML list"),
    "string": ("just a string\n", "holds a single str"),
}


@pytest.mark.parametrize("kind", list(CONFIGS_WITHOUT_A_MAPPING))
def test_fit_names_a_config_file_that_holds_no_mapping(tmp_path, phantom_root, capsys, kind):
    text, what = CONFIGS_WITHOUT_A_MAPPING[kind]
    config = tmp_path / f"{kind}.yaml"
    config.write_text(text)
    args = fit_args(tmp_path, phantom_root)
    args[args.index(str(TINY)) + 1 : args.index(str(TINY)) + 1] = ["--config", str(config)]
    _refused(args, capsys, f"config {config} {what}", "mapping of sections")


def test_a_config_base_that_holds_no_mapping_is_named(tmp_path, phantom_root, capsys):
    (tmp_path / "empty.yaml").write_text("")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("config: empty.yaml\ntrainer:\n  max_steps: 1\n")
    args = fit_args(tmp_path, phantom_root)
    args[args.index(str(TINY)) + 1 : args.index(str(TINY)) + 1] = ["--config", str(overlay)]
    _refused(args, capsys, f"config {tmp_path / 'empty.yaml'} is empty", "mapping of sections")


def test_generate_names_a_data_config_that_holds_no_mapping(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    args = ["generate", "--model", str(PIPELINE), "--data-config", str(empty), "--out", str(tmp_path / "o")]
    _refused(args, capsys, f"config {empty} is empty", "mapping of sections")
    assert not (tmp_path / "o").exists()
