"""`AtomicCheckpointIO`: a process killed mid-save leaves the previous checkpoint loadable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
KILLED_MID_SAVE = """
import os, signal, sys, torch
from cxr_ldm.checkpoints import AtomicCheckpointIO

io, target = AtomicCheckpointIO(), sys.argv[1]
io.save_checkpoint({"w": torch.zeros(100_000)}, target)

def dying_save(obj, stream, *args, **kwargs):  # half of the new checkpoint written, then kill -9
    stream.write(b"x" * 200_000)
    stream.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dying_save
io.save_checkpoint({"w": torch.ones(100_000)}, target)
"""


def test_kill_mid_save_keeps_the_previous_checkpoint(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    result = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(target)], cwd=ROOT, timeout=120)
    assert result.returncode == -9
    assert float(torch.load(target)["w"].sum()) == 0.0  # the first checkpoint, whole
    (orphan,) = target.parent.glob(".last.ckpt.*.tmp")  # named for RunCheckpoint's cleaning
    assert orphan.stat().st_size == 200_000


def test_checkpoint_gets_the_mode_a_plain_write_gives(tmp_path):
    """Written through a temporary file, a checkpoint is still readable as the user's umask allows
    (mkstemp alone leaves it owner-only, 0600)."""
    import os

    from cxr_ldm.checkpoints import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    old = os.umask(0o022)
    try:
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(3)}, target)
        plain = tmp_path / "plain"
        plain.write_bytes(b"")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644


def test_last_ckpt_holds_the_final_step_however_the_fit_was_interrupted(tmp_path):
    """A fit of 32 steps with a checkpoint every 5: `last.ckpt` is the step-32 state when run straight and
    when resumed from the step-25 or step-30 checkpoint (Lightning alone kept step 30 run straight, and
    saved step 32 only in a resumed process that had saved nothing)."""
    from _tiny_run import tiny_trainer
    from test_learning_curve import Killed, Regression, regression_data

    from cxr_ldm.checkpoints import RunCheckpoint

    def fit(root, killed_at=None, resume=False):
        callbacks = [RunCheckpoint(save_last=True, every_n_train_steps=5, save_top_k=0)]
        trainer = tiny_trainer(root, max_steps=32, enable_checkpointing=True,
                               callbacks=callbacks + ([Killed(killed_at)] if killed_at else []))  # fmt: skip
        try:
            trainer.fit(Regression(), regression_data(), ckpt_path="last" if resume else None)
        except RuntimeError as error:
            assert killed_at and str(error) == "killed"
        return torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)

    straight = fit(tmp_path / "straight")
    assert straight["global_step"] == 32
    for killed_at in (27, 31):
        fit(tmp_path / f"killed{killed_at}", killed_at=killed_at)
        resumed = fit(tmp_path / f"killed{killed_at}", resume=True)
        # the step only: this plain DataLoader does not resume mid-epoch, so the weights differ
        assert resumed["global_step"] == 32


def test_a_folder_given_for_a_checkpoint_is_named_as_a_folder(tmp_path):
    """`evaluate --classifier runs/classifier-tiny` (the run's folder) said the checkpoint did not exist."""
    from cxr_ldm.checkpoints import load_checkpoint
    from cxr_ldm.errors import ConfigError
    from cxr_ldm.evaluation.evaluators import CxrClassifier

    with pytest.raises(ConfigError, match=r"--classifier: .* is a folder; give the \.ckpt file"):
        load_checkpoint(tmp_path, CxrClassifier, "--classifier")
