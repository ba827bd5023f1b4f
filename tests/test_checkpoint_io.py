"""`AtomicCheckpointIO`: a process killed mid-save leaves the previous checkpoint loadable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
