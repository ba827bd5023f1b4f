"""Fault injection: each class of bad input or interruption a hostile or careless user can cause, with the
outcome promised in docs/reliability.md (a clear message, skipped and counted, or refused)."""

from __future__ import annotations

import os
import subprocess
import sys

from _tiny_run import ROOT


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": ""},
        timeout=300,
    )


# ---------------------------------------------------------------- 4. warnings stay on
def test_importing_the_package_keeps_warnings_visible():
    code = (
        "import warnings\n"
        "import cxr_ldm.models, cxr_ldm.evaluation, cxr_ldm.xrv\n"
        "blanket = [f for f in warnings.filters if f[0] == 'ignore' and f[1] is None and f[2] is Warning]\n"
        "assert not blanket, warnings.filters[:3]\n"
        "warnings.warn('still shown', UserWarning)\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert "UserWarning: still shown" in result.stderr


def test_torchxrayvision_is_imported_in_one_place_only():
    offenders = []
    for folder in ("cxr_ldm", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            if path.name not in ("xrv.py", "test_faults.py") and (
                "import torchxrayvision" in text or '"torchxrayvision")' in text
            ):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
