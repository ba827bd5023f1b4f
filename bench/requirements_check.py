"""Print the project requirements this Python lacks (pip requirement strings, one a line), else nothing.

`bench/gpu_check.sh` installs those from the carried wheels.
"""

from __future__ import annotations

import ast
import re
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements() -> list[str]:
    """`[project] dependencies` of pyproject.toml (read without tomllib, which Python 3.10 lacks)."""
    block = re.search(r"^dependencies = (\[.*?^\])", PYPROJECT.read_text(), re.S | re.M)
    return ast.literal_eval(block.group(1))


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
    lacking = missing()
    if lacking:
        print("\n".join(lacking))
