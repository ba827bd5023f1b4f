"""Print the project requirements this Python lacks (space-separated pip requirement strings), else nothing.

`bench/gpu_check.sh` installs those from the carried wheels.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements() -> list[str]:
    return tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]


def missing() -> list[str]:
    lacking = []
    for requirement in requirements():
        name = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            lacking.append(requirement)
    return lacking


if __name__ == "__main__":
    print(" ".join(f"'{r}'" if any(c in r for c in "<>[") else r for r in missing()))
