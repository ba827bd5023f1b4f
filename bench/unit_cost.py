"""One experiment unit's cost, before -> after: the fit (N steps with its learning-curve probes, validation
and checkpoints) and the protocol's evaluation of the fitted model, for two source trees side by side.

`before` is a git revision of this repository, exported with `git archive` into `<out>/src-<rev>`; `after`
is this checkout. Each (tree, repeat) is a fresh subprocess run in that tree (its package and its configs,
the same experiment config path), alternating before, after, before, after, ... so drift of a shared
machine hits both. All of them share one references folder (`<out>/refs`: the phantom's latent cache, the
evaluator, the retriever), built first by the `after` tree, so a run times its unit only. The world is
fixed: the same experiment config, arm, seed, image size, `--steps` (no early stop: convergence patience
is set above the number of probes) and probe interval `--every`. The thread count is each tree's own
config value (`--threads N` forces both): the after tree's `auto` resolves to the cores of this process.

Prints each run's fit and evaluation seconds (wall and CPU, user + sys of the subprocess) and, at the end,
the median of each over the repeats and the ratio before / after (above 1: after is cheaper):

    python bench/unit_cost.py --before 5e47c58 --steps 300 --every 100 --repeats 3
    python bench/unit_cost.py --before 5e47c58 --config configs/experiments/demo.yaml --threads 1
    python bench/unit_cost.py --config configs/experiments/demo.yaml --steps 100 --every 50 --repeats 2 \
        --set protocol.test_prompts=60

The first run builds the references (minutes); later runs reuse them (same `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "UNIT_COST "


def export_tree(revision: str, out: Path) -> Path:
    """The source tree of `revision` under `out` (made once with `git archive`)."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", revision], check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = out / f"src-{commit}"
    if not (tree / "cxr_ldm").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"git archive {revision} failed")
    return tree


def child_argv(args: argparse.Namespace) -> list[str]:
    """The experiment command-line arguments of every run: the fixed world."""
    out = Path(args.out).resolve()
    argv = [
        "--config", args.config, "--out", str(out / "refs"), "--seeds", "[0]", "--steps", str(args.steps),
        "--pretrained", str(ROOT / "artifacts" / "tiny-pretrained"), "--data.root", str(ROOT / "data" / "demo-phantom"),
        "--convergence.every_n_steps", str(args.every), "--convergence.min_steps", "0",
        "--convergence.patience", str(args.steps // args.every + 1), "--augmentation", "null",
    ]  # fmt: skip
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    for setting in args.set:
        key, _, value = setting.partition("=")
        argv += [f"--{key}", value]
    return argv


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(args: argparse.Namespace) -> None:
    """In a source tree (cwd and PYTHONPATH): the references, or one unit's fit and evaluation, timed."""
    from cxr_ldm.commands.experiment import parse_experiment
    from cxr_ldm.experiments import engine
    from cxr_ldm.experiments.progress import StageLog
    from cxr_ldm.experiments.unit_start import start_unit

    config, _ = parse_experiment(child_argv(args))
    config = config.resolved() if hasattr(config, "resolved") else config
    start_unit(config.threads, 0)
    log = StageLog("unit_cost")
    if args.child == "references":
        engine._references(config, log, build=True)
        return
    from cxr_ldm.evaluation.protocol import judge

    arm = next(a for a in config.arms if a.name == args.arm)
    references, _ = engine._references(config, log)
    run_dir = Path(args.child)
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh fit, never one a former bench run left done
    asked = engine.arm_prompting(config, arm, references, run_dir)
    wall, cpu = time.perf_counter(), cpu_seconds()
    fitted = engine.fit_arm(config, arm, 0, run_dir, references, asked)  # writes the probe set first
    # (checkpoint, training seconds) since fbfea85; the checkpoint alone in a --before tree older than that
    checkpoint = fitted[0] if isinstance(fitted, tuple) else fitted
    fit = (time.perf_counter() - wall, cpu_seconds() - cpu)
    wall, cpu = time.perf_counter(), cpu_seconds()
    metrics = judge(checkpoint, run_dir / "eval", config.protocol, references, asked)
    evaluation = (time.perf_counter() - wall, cpu_seconds() - cpu)
    curve = json.loads((run_dir / "fit" / "learning_curve.json").read_text())
    print(MARK + json.dumps({
        "threads": config.threads, "fit_wall": fit[0], "fit_cpu": fit[1], "eval_wall": evaluation[0],
        "eval_cpu": evaluation[1], "probe": metrics["probe"]["cond_balanced_accuracy"],
        "curve": [round(r["value"], 3) for r in curve["records"]],
    }), flush=True)  # fmt: skip


def launch(tree: Path, args: argparse.Namespace, what: str) -> dict | None:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", what, *sys.argv[1:]]
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-6000:])
        raise SystemExit(f"{tree}: {what} failed (exit {done.returncode})")
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    return json.loads(lines[-1][len(MARK) :]) if lines else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--before", default="5e47c58", help="git revision of the 'before' tree (with today's engine API)"
    )
    parser.add_argument("--config", default="configs/experiments/paper.yaml")
    parser.add_argument("--arm", default="unet-text")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100, help="steps between learning-curve probes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="force this thread count in both trees")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="an experiment key for both trees, e.g. protocol.test_prompts=60 (a smaller evaluation)",
    )  # fmt: skip
    parser.add_argument("--out", default="runs/bench-unit-cost")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_child(args)
        return
    out = Path(args.out).resolve()
    trees = {"before": export_tree(args.before, out), "after": ROOT}
    print(f"before: {args.before} ({trees['before']}), after: {ROOT}; {args.config}, arm {args.arm}, "
          f"{args.steps} steps, a probe every {args.every}", flush=True)  # fmt: skip
    started = time.perf_counter()
    launch(ROOT, args, "references")
    print(f"references: {time.perf_counter() - started:.0f} s", flush=True)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for repeat in range(args.repeats):
        for label, tree in trees.items():
            run = launch(tree, args, str(out / "units" / f"{args.arm}-{label}-{repeat}"))
            runs[label].append(run)
            print(f"{label} #{repeat}: threads {run['threads']}, fit {run['fit_wall']:.1f} s wall / "
                  f"{run['fit_cpu']:.1f} s cpu, evaluation {run['eval_wall']:.1f} s wall / {run['eval_cpu']:.1f} s "
                  f"cpu, probe BA {run['probe']:.3f}, curve {run['curve']}", flush=True)  # fmt: skip
    print("median over repeats: before -> after (ratio before / after)")
    for key in ("fit_wall", "fit_cpu", "eval_wall", "eval_cpu"):
        before = statistics.median(r[key] for r in runs["before"])
        after = statistics.median(r[key] for r in runs["after"])
        print(f"  {key:9s} {before:8.1f} -> {after:8.1f} s  ({before / after:.2f}x)")
    for kind in ("wall", "cpu"):
        before = statistics.median(r[f"fit_{kind}"] + r[f"eval_{kind}"] for r in runs["before"])
        after = statistics.median(r[f"fit_{kind}"] + r[f"eval_{kind}"] for r in runs["after"])
        print(f"  unit_{kind:4s} {before:8.1f} -> {after:8.1f} s  ({before / after:.2f}x)")


if __name__ == "__main__":
    main()
