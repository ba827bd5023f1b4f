"""The command line: help lists every command; bad configs fail before training, naming key or path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _tiny_run import ROOT, fit_args

from cxr_ldm.__main__ import main
from cxr_ldm.commands import COMMANDS as TOOL_COMMANDS


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cxr_ldm", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        timeout=300,
    )


def test_help_lists_all_commands():
    result = _run("--help")
    assert result.returncode == 0
    for name in ["fit", "validate", "test", "predict", *TOOL_COMMANDS]:
        assert f"  {name} " in result.stdout


def _probe(code: str) -> str:
    """What a fresh Python process running `code` in the repository prints (it must exit 0)."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_experiment_config_and_its_status_are_read_without_the_training_libraries(tmp_path):
    """`experiment --print_config`, `--help`, a config's mistakes and `--status` answer before torch, Lightning
    or diffusers load: the config's classes (experiments/spec.py, evaluation/specs.py, the follow-ups' specs)
    and what a unit's state is read from (its records, its inputs) import none of them."""
    probe = (
        "import sys\n"
        "from cxr_ldm.commands.experiment import launch, parse_command\n"
        "parse_command(['--config', 'configs/experiments/paper.yaml', '--protocol.guidance', '3.0'])\n"
        "status = parse_command(['--config', 'configs/experiments/paper.yaml', '--config',\n"
        f"    'configs/clusters/local.yaml', '--out', {str(tmp_path / 'out')!r}, '--status'])\n"
        "states = {s.state for s in launch(status).states}\n"
        "print(sorted(states), sorted(m for m in ('torch', 'lightning', 'diffusers', 'transformers')"
        " if m in sys.modules))\n"
    )
    assert _probe(probe).strip() == "['pending'] []"
    wrong = _run("experiment", "--config", "configs/experiments/paper.yaml", "--protocl.guidance", "3")
    assert wrong.returncode == 2 and "--protocl.guidance" in wrong.stderr


def test_the_fit_command_knows_the_data_modules_by_name():
    """`fit --help` lists the project's data modules and `--data MimicCxrDataModule` resolves: the CLI imports
    them before it builds its parser, though `cxr_ldm.data` loads them only when asked for."""
    probe = (
        "import json\n"
        "import cxr_ldm.training.lightning_cli\n"
        "from lightning import LightningDataModule\n"
        "print(json.dumps([c.__name__ for c in LightningDataModule.__subclasses__()]))\n"
    )
    known = set(json.loads(_probe(probe).splitlines()[-1]))
    assert {"MimicCxrDataModule", "ReportCorpusDataModule"} <= known


def test_unknown_command_is_an_error(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_print_config_resolves_tiny_config(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(ROOT / "configs" / "tiny.yaml"), "--print_config"])
    assert stop.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: cxr_ldm.models.LatentDiffusion" in printed and "cross_attention_dim: 32" in printed


def _fails_naming(args: list[str], capsys, *needles: str) -> None:
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code
    assert code not in (0, None)
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err


def test_misspelled_key_names_the_key(tmp_path, phantom_root, capsys):
    _fails_naming(fit_args(tmp_path, phantom_root, "--model.init_args.ema_decai", "0.9"), capsys, "ema_decai")
    assert not (tmp_path / "checkpoints").exists()


def test_a_config_that_is_not_yaml_is_named_with_its_line(tmp_path, capsys):
    """jsonargparse says "Problems parsing config" without the file: with two --config files, which one?"""
    bad = tmp_path / "second.yaml"
    bad.write_text("trainer:\n  max_steps: [1\n")
    assert (
        main(["fit", "--config", str(ROOT / "configs" / "tiny.yaml"), "--config", str(bad), "--print_config"])
        == 2
    )
    err = capsys.readouterr().err
    assert f"config {bad} is not valid YAML" in err and "line 3" in err
    top = tmp_path / "top.yaml"  # the broken file is the base of the one given: the base is named
    top.write_text("config: second.yaml\n")
    tiny = str(ROOT / "configs" / "tiny.yaml")
    assert main(["fit", "--config", tiny, "--config", str(top), "--print_config"]) == 2
    assert f"config {bad} is not valid YAML" in capsys.readouterr().err


def test_missing_pretrained_directory_names_the_path(tmp_path, phantom_root, capsys):
    missing = str(tmp_path / "no-such-pipeline")
    args = fit_args(
        tmp_path,
        phantom_root,
        "--model.init_args.components.pretrained_model_name_or_path",
        missing,
        "--model.init_args.components.unet_config",
        "null",
    )
    _fails_naming(args, capsys, missing, "does not exist")
    assert not (tmp_path / "checkpoints").exists()


def test_offline_hub_id_names_the_id_and_the_fix(tmp_path, phantom_root, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = fit_args(
        tmp_path,
        phantom_root,
        "--model.init_args.components.pretrained_model_name_or_path",
        "CompVis/stable-diffusion-v1-4",
        "--model.init_args.components.unet_config",
        "null",
    )
    _fails_naming(args, capsys, "CompVis/stable-diffusion-v1-4", "hf download")


def test_vae_cannot_be_trained_through_the_diffusion_loss(tmp_path, phantom_root, capsys):
    args = fit_args(tmp_path, phantom_root, "--model.init_args.trainable", '{"vae": {"lr": 1e-4}}')
    _fails_naming(args, capsys, "trainable", "vae")


def test_missing_data_root_names_the_csv(tmp_path, capsys):
    missing = tmp_path / "no-mimic-here"
    assert main(fit_args(tmp_path, missing)) == 2
    err = capsys.readouterr().err
    assert f"{missing}/mimic-cxr-2.0.0-metadata.csv.gz" in err and "Traceback" not in err
