"""Download the wheels `bench/gpu_check.sh` installs on an offline GPU machine that has torch and lightning.

Takes the project's dependencies (pyproject.toml, extras included) and their dependency closure as installed
in the Python running this script, leaves out torch, torchvision, lightning and what they bring (the GPU
machine keeps its own CUDA build), and runs `pip download --no-deps name==version` for the rest, so the GPU
machine gets the exact versions the tests ran with:

    .venv/bin/python bench/make_wheels.py                      # wheels for this Python and platform
    .venv/bin/python bench/make_wheels.py --python-version 3.10  # binary wheels for another CPython (x86_64)

bench/wheels/ is git-ignored; copy it along with the checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from requirements_check import requirements

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = {"torch", "torchvision", "torchaudio", "lightning", "pytorch-lightning"}


def closure(requirements: list[str], stop: set[str]) -> dict[str, str]:
    """{name: installed version} of the requirements and everything they need (markers evaluated)."""
    found: dict[str, str] = {}
    todo = [(Requirement(r), frozenset(Requirement(r).extras)) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in stop:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here
        key = (name, extras)
        if key in found:
            continue
        found[key] = dist.version
        for line in dist.requires or []:
            child = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in environments):
                todo.append((child, frozenset(child.extras)))
    return {name: version for (name, _), version in found.items()}


def torch_side() -> set[str]:
    """torch, lightning and their own dependencies: present on the GPU machine already."""
    base = closure(sorted(LEFT_OUT), set())
    return set(base) | LEFT_OUT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dest", default=str(ROOT / "bench" / "wheels"))
    parser.add_argument("--python-version", help="target CPython version, e.g. 3.10 (default: this one)")
    args = parser.parse_args(argv)
    project = requirements()
    direct = {canonicalize_name(Requirement(r).name) for r in project}
    wanted = closure(project, (torch_side() - direct) | LEFT_OUT)
    pins = sorted(f"{name}=={version}" for name, version in wanted.items())
    target = []
    if args.python_version:
        target = ["--python-version", args.python_version, "--only-binary=:all:"]
        target += ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64"]
    Path(args.dest).mkdir(parents=True, exist_ok=True)
    print(f"downloading {len(pins)} wheels into {args.dest}: {' '.join(pins)}")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", args.dest, *target, *pins]
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
