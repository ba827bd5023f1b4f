"""How long a command line takes to answer when it only reads a config or the unit records, before -> after:
`experiment --help`, `--print_config` and `--status`, each a fresh process of this venv's Python run in a tree
(`before`: a git revision exported by bench/unit_cost.py's `export_tree`; `after`: this checkout), alternating
before, after, ... so that a shared machine's drift falls on both. Prints the median wall time of each and the
ratio before / after (above 1: after answers sooner):

    python bench/cli_startup.py --before fb724f0 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unit_cost import ROOT, export_tree  # noqa: E402

PAPER = ["--config", "configs/experiments/paper.yaml", "--config", "configs/clusters/local.yaml"]
COMMANDS = {
    "help": ["experiment", "--help"],
    "print_config": ["experiment", *PAPER, "--print_config"],
    "status": ["experiment", *PAPER, "--status", "--out", "{out}/status-run"],
}


def wall_seconds(tree: Path, argv: list[str]) -> float:
    """One run of `python -m cxr_ldm argv` from `tree` (`-m` puts the working folder first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cxr_ldm", *argv], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default="fb724f0", help="git revision of the 'before' tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="runs/bench/cli_startup")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    trees = {"before": export_tree(args.before, out), "after": ROOT}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            for side, tree in trees.items():
                shown = [a.replace("{out}", str(out / side)) for a in argv]
                times.setdefault((name, side), []).append(wall_seconds(tree, shown))
    print(f"before: {args.before}, after: {ROOT}; median wall seconds over {args.rounds} rounds")
    for name in COMMANDS:
        before, after = (statistics.median(times[name, side]) for side in ("before", "after"))
        print(f"  {name:13s} {before:6.2f} -> {after:6.2f} s  ({before / after:.1f}x)")


if __name__ == "__main__":
    main()
