"""No source the project ships is matched by .gitignore: a new file beside it would be left out of commits."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from _tiny_run import ROOT

SHIPPED = ("cxr_ldm", "configs", "tests", "bench", "scripts", "docs")
LOCAL = ("bench/wheels/",)  # ignored on purpose: wheels a device run carries, never committed


def test_no_shipped_source_matches_an_ignore_rule() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = [p.relative_to(ROOT).as_posix() for folder in SHIPPED for p in (ROOT / folder).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]  # fmt: skip
    files = [f for f in files if not f.startswith(LOCAL)]
    assert len(files) > 100
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(files),
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert ignored == []
