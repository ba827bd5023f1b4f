"""`cxr_ldm.cli.run_fit`: a fit from config files and overrides, called from Python, as the augmentation
experiment and the demo run it; the process's `sys.argv` is left alone."""

from __future__ import annotations

import logging
import sys

from _tiny_run import TINY

from cxr_ldm.cli import fit_args, run_fit


def test_fit_args_write_values_as_the_command_line_reads_them():
    line = fit_args(
        ["a.yaml", "b.yaml"],
        {"data.init_args.max_images": {"train": 50}, "data.init_args.views": ("PA",), "trainer.logger": None},
        args=["--trainer.max_steps", "2"],
        ckpt_path="auto",
    )
    assert line == [
        "fit", "--config", "a.yaml", "--config", "b.yaml",
        "--data.init_args.max_images", '{"train": 50}', "--data.init_args.views", '["PA"]',
        "--trainer.logger", "null", "--trainer.max_steps", "2", "--ckpt_path", "auto",
    ]  # fmt: skip


def test_run_fit_trains_resumes_with_auto_and_leaves_sys_argv(tmp_path, phantom_root, monkeypatch, caplog):
    monkeypatch.setattr(sys, "argv", ["pytest", "--an-option-fit-does-not-know"])
    overrides = {
        "data.init_args.root": str(phantom_root),
        "data.init_args.cache_dir": str(tmp_path / "cache"),
        "trainer.default_root_dir": str(tmp_path),
        "trainer.logger.init_args.save_dir": str(tmp_path),
        "trainer.enable_progress_bar": False,
        "trainer.max_steps": 2,
    }
    with caplog.at_level(logging.WARNING, logger="cxr_ldm"):
        first = run_fit([TINY], overrides, ckpt_path="auto")
    assert first.trainer.global_step == 2
    assert "starting afresh" in caplog.text
    assert sys.argv == ["pytest", "--an-option-fit-does-not-know"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cxr_ldm"):
        second = run_fit([TINY], {**overrides, "trainer.max_steps": 4}, ckpt_path="auto")
    assert second.trainer.global_step == 4
    assert "resuming from" in caplog.text and "last.ckpt" in caplog.text
