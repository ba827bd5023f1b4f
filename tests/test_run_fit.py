"""`cxr_ldm.training.fit`: a fit from config files and overrides given as Python objects, as the experiment
engine and the augmentation experiment run it; no command line in between, and `sys.argv` left alone."""

from __future__ import annotations

import logging
import sys

import pytest
from _tiny_run import ROOT, TINY

from cxr_ldm.errors import ConfigError
from cxr_ldm.training.fit import fit, fit_command_line
from cxr_ldm.training.lightning_cli import FitRequest, nested, run_lightning_cli


def test_fit_command_line_is_printed_as_the_shell_reads_it():
    line = fit_command_line(
        ["a.yaml", "b.yaml"],
        {"data.init_args.max_images": {"train": 50}, "data.init_args.views": ("PA",), "trainer.logger": None},
        ckpt_path="auto",
    )
    assert line == (
        "python -m cxr_ldm fit --config a.yaml --config b.yaml --data.init_args.max_images '{\"train\": 50}' "
        "--data.init_args.views '[\"PA\"]' --trainer.logger null --ckpt_path auto"
    )


def test_dotted_overrides_nest_and_merge():
    assert nested({"trainer.max_steps": 2, "trainer.logger.init_args.name": "x", "seed_everything": 1}) == {
        "trainer": {"max_steps": 2, "logger": {"init_args": {"name": "x"}}},
        "seed_everything": 1,
    }


@pytest.mark.parametrize(
    "configs",
    [
        [ROOT / "configs/tiny.yaml"],
        [
            ROOT / "configs/finetune/sd14-unet-text-pa.yaml",
            ROOT / "configs/experiments/_phantom/finetune.yaml",
            ROOT / "configs/experiments/_phantom/arms/unet-text.yaml",
        ],
        [
            ROOT / "configs/finetune/textual-inversion-pa.yaml",
            ROOT / "configs/experiments/_phantom/finetune.yaml",
            ROOT / "configs/experiments/_phantom/arms/textual-inversion.yaml",
        ],
    ],
    ids=["tiny", "unet-text arm", "textual-inversion arm"],
)
def test_python_composition_equals_the_command_lines(configs, tmp_path):
    """The same files and values, as objects and as a command line, give the same parsed config."""
    for path in configs:
        if not path.is_file():
            pytest.skip(f"{path} not in this checkout")
    overrides = {
        "trainer.max_steps": 7,
        "data.init_args.max_images": {"train": 50},
        "model.init_args.components.pretrained_model_name_or_path": "artifacts/tiny-pretrained",
        "trainer.logger.init_args.save_dir": str(tmp_path),
    }
    from_objects = run_lightning_cli(FitRequest(configs, overrides), run=False, instantiate=False).config
    line = [a for c in configs for a in ("--config", str(c))]
    line += ["--trainer.max_steps", "7", "--data.init_args.max_images", '{"train": 50}',
             "--model.init_args.components.pretrained_model_name_or_path", "artifacts/tiny-pretrained",
             "--trainer.logger.init_args.save_dir", str(tmp_path)]  # fmt: skip
    from_argv = run_lightning_cli(line, run=False, instantiate=False).config
    a, b = from_objects.clone(), from_argv.clone()
    for cfg in (a, b):
        cfg.pop("config", None)
        cfg.pop("__path__", None)
    assert a.as_dict() == b.as_dict()
    assert a.data.init_args.max_images == {"train": 50}  # a mapping stays a mapping, not JSON text


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.yaml does not exist"):
        run_lightning_cli(FitRequest([tmp_path / "nowhere.yaml"]), run=False, instantiate=False)


def test_fit_trains_resumes_with_auto_and_leaves_sys_argv(tmp_path, phantom_root, monkeypatch, caplog):
    monkeypatch.setattr(sys, "argv", ["pytest", "--an-option-fit-does-not-know"])
    overrides = {
        "data.init_args.root": phantom_root,  # a Path, as library callers hold it
        "data.init_args.cache_dir": str(tmp_path / "cache"),
        "trainer.default_root_dir": str(tmp_path),
        "trainer.logger.init_args.save_dir": str(tmp_path),
        "trainer.enable_progress_bar": False,
        "trainer.max_steps": 2,
    }
    with caplog.at_level(logging.WARNING, logger="cxr_ldm"):
        first = fit([TINY], overrides, ckpt_path="auto")
    assert first.trainer.global_step == 2
    assert "starting afresh" in caplog.text
    assert sys.argv == ["pytest", "--an-option-fit-does-not-know"]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cxr_ldm"):
        second = fit([TINY], {**overrides, "trainer.max_steps": 4}, ckpt_path="auto")
    assert second.trainer.global_step == 4
    assert "resuming from" in caplog.text and "last.ckpt" in caplog.text
