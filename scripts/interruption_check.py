"""Killed with SIGKILL at any point and run again, the toy experiment gives the same `results.json` as a run
straight through (every value but the times).

    python scripts/interruption_check.py --work runs/interrupt            # every case, about 45 min on 2 cores
    python scripts/interruption_check.py --work runs/interrupt --cases b  # one case

Each case runs the toy experiment (`python -m cxr_ldm experiment`, the demo at a toy budget) in its own
fresh `--out` under `--work`, as a subprocess; a poll on the files it writes finds the moment to kill it
(SIGKILL to its process group), checks the run was where the case says, and runs the same command again to
the end. Its `results.json` is compared with the straight run's, leaf by leaf (`times_s` and every
`seconds` left out, the output folder written as `<out>`):

    a  killed during the fit, after its latent cache was written, before any checkpoint
    b  killed during the fit, after a checkpoint was written (the rerun resumes mid-fit, mid-epoch)
    c  killed during the evaluation (the fit done, the protocol's images being drawn)
    d  not killed: a fresh `--out` whose caches (image index, latent cache) are copied from the straight run,
       so they are found on disk instead of built in the process
    convergence  with learning curves (convergence enabled, small): killed during the fit after the probe of
       step 200 and its checkpoint; compared with a straight run with the same convergence settings

Prints a table (case, where it was killed, numbers compared, numbers that differ, other values that differ)
and writes it to `<work>/summary-<cases>.json`; exits 1 when any value differs or a kill missed its moment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARM = Path("arms") / "unet-text" / "seed0"
KILL_STEP = [150]  # case b: killed once a checkpoint exists and the progress log reached this step
EVAL_IMAGES = [4]  # case c: killed once the evaluation wrote this many images
CONVERGENCE = ["--convergence.every_n_steps", "100", "--convergence.min_steps", "200",
               "--convergence.images_per_finding", "32", "--convergence.patience", "2"]  # fmt: skip


def toy_command(out: Path, steps: int, convergence: bool, extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "cxr_ldm", "experiment", "--config", "configs/experiments/demo.yaml",
               "--seeds", "[0]", "--steps", str(steps), "--protocol.probe_images", "4",
               "--protocol.test_prompts", "20", "--protocol.fid_guidance", "null",
               "--evaluator.classifier.steps", "60", "--augmentation", "null", "--out", str(out)]  # fmt: skip
    return command + (CONVERGENCE if convergence else ["--convergence", "null"]) + extra


# ---------------------------------------------------------------- what is on disk while it runs


def latents_written(out: Path) -> bool:
    return any((out / "cache").glob("*/latents-*/latents.npy"))


def last_checkpoint(out: Path) -> Path:
    return out / ARM / "fit" / "checkpoints" / "last.ckpt"


def progress_step(log: Path) -> int:
    """The last training step the fit's progress log printed (ProgressLog: `step N/M ...`)."""
    steps = [int(line.split()[1].split("/")[0]) for line in read_lines(log) if line.startswith("step ")]
    return max(steps, default=0)


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def curve_steps(out: Path) -> list[int]:
    try:
        records = json.loads((out / ARM / "fit" / "learning_curve.json").read_text())["records"]
    except (OSError, ValueError, KeyError):
        return []
    return [record["step"] for record in records]


def evaluation_images(out: Path) -> int:
    return sum(1 for path in (out / ARM / "eval").rglob("*.png"))


def checkpoint_step(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


# ---------------------------------------------------------------- the cases


@dataclass
class Case:
    name: str
    what: str
    convergence: bool = False
    kill_when: Callable[[Path, Path], bool] | None = None  # (out, log) -> now
    at_kill: Callable[[Path, Path], str] | None = None  # (out, log) -> where it was; raises when wrong
    prepare: Callable[[Path, Path], None] | None = None  # (out, straight out) before the first run


def at_kill_a(out: Path, log: Path) -> str:
    assert latents_written(out), "no latent cache yet"
    assert not last_checkpoint(out).exists(), "a checkpoint was already written"
    return f"latent cache written, no checkpoint, progress log at step {progress_step(log)}"


def at_kill_b(out: Path, log: Path) -> str:
    step = checkpoint_step(last_checkpoint(out))
    assert not (out / ARM / "fit" / "done").exists(), "the fit had finished"
    return f"fit at step {progress_step(log)}, last.ckpt of step {step}"


def at_kill_c(out: Path, log: Path) -> str:
    assert (out / ARM / "fit" / "done").exists(), "the fit had not finished"
    assert not (out / ARM / "result.json").exists(), "the evaluation had finished"
    return f"fit done, {evaluation_images(out)} evaluation images written"


def at_kill_convergence(out: Path, log: Path) -> str:
    step = checkpoint_step(last_checkpoint(out))
    assert 200 in curve_steps(out) and step == 200, f"checkpoint of step {step}, probes {curve_steps(out)}"
    assert not (out / ARM / "fit" / "done").exists(), "the fit had finished"
    return f"fit at step {progress_step(log)}, probes at steps {curve_steps(out)}, last.ckpt of step {step}"


def copy_caches(out: Path, straight: Path) -> None:
    out.mkdir(parents=True)
    shutil.copytree(straight / "cache", out / "cache")


def convergence_kill(out: Path, log: Path) -> bool:
    checkpoint = last_checkpoint(out)
    curve = out / ARM / "fit" / "learning_curve.json"
    if 200 not in curve_steps(out) or not checkpoint.exists():
        return False
    return checkpoint.stat().st_mtime > curve.stat().st_mtime and time.time() - checkpoint.stat().st_mtime > 3


CASES = {
    "a": Case("a", "during the fit, after its latent cache, before any checkpoint",
              kill_when=lambda out, log: latents_written(out), at_kill=at_kill_a),
    "b": Case("b", "during the fit, after a checkpoint (mid-fit resume)",
              kill_when=lambda out, log: last_checkpoint(out).exists() and progress_step(log) >= KILL_STEP[0],
              at_kill=at_kill_b),
    "c": Case("c", "during the evaluation (fit done, images being drawn)",
              kill_when=lambda out, log: (out / ARM / "fit" / "done").exists() and evaluation_images(out) >= EVAL_IMAGES[0],
              at_kill=at_kill_c),
    "d": Case("d", "not killed: caches found on disk (copied) instead of built", prepare=copy_caches),
    "convergence": Case("convergence", "learning curves on: during the fit, after the probe and checkpoint "
                        "of step 200", convergence=True, kill_when=convergence_kill, at_kill=at_kill_convergence),
}  # fmt: skip


# ---------------------------------------------------------------- running and comparing


def run(command: list[str], log: Path, kill_when=None, out: Path | None = None) -> tuple[int, bool]:
    """Run `command` (output appended to `log`); with `kill_when`, SIGKILL its process group once it holds.
    Returns (exit status, killed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "a") as stream:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=stream, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        while process.poll() is None:
            if kill_when is not None and kill_when(out, log):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return process.returncode, True
            time.sleep(0.2)
    return process.returncode, False


def comparable(path: Path, out: Path) -> object:
    def drop(value):
        if isinstance(value, dict):
            return {k: drop(v) for k, v in value.items() if k not in ("times_s", "seconds")}
        if isinstance(value, list):
            return [drop(v) for v in value]
        return value

    text = path.read_text().replace(str((REPO / out).resolve()), "<out>").replace(str(out), "<out>")
    return drop(json.loads(text))


def leaves(value, prefix="") -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{prefix}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same(a, b) -> bool:
    if is_number(a) and is_number(b) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


@dataclass
class Comparison:
    numbers: int = 0
    numbers_differ: int = 0
    others: int = 0
    others_differ: int = 0
    differences: list[str] = field(default_factory=list)


def compare(reference: dict, other: dict) -> Comparison:
    found = Comparison()
    a, b = leaves(reference), leaves(other)
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key, "<missing>"), b.get(key, "<missing>")
        number = is_number(left) or is_number(right)
        found.numbers += number
        found.others += not number
        if not same(left, right):
            found.numbers_differ += number
            found.others_differ += not number
            found.differences.append(f"{key}: {left!r} != {right!r}")
    return found


def straight_run(work: Path, steps: int, convergence: bool, extra: list[str]) -> Path:
    out = work / ("straight-convergence" if convergence else "straight")
    if not (out / "results.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        code, _ = run(toy_command(out, steps, convergence, extra), work / f"{out.name}.log")
        if code != 0:
            raise SystemExit(f"the straight run failed (exit {code}); its log: {work / f'{out.name}.log'}")
    return out


def run_case(case: Case, work: Path, steps: int, extra: list[str] = ()) -> dict:
    extra = list(extra)
    straight = straight_run(work, steps, case.convergence, extra)
    out, log = work / f"case-{case.name}", work / f"case-{case.name}.log"
    shutil.rmtree(out, ignore_errors=True)
    log.unlink(missing_ok=True)
    if case.prepare is not None:
        case.prepare(out, straight)
    command = toy_command(out, steps, case.convergence, extra)
    row = {"case": case.name, "what": case.what, "log": str(log)}
    started = time.time()
    if case.kill_when is not None:
        code, killed = run(command, log, case.kill_when, out)
        if not killed:
            return {**row, "error": f"the run ended (exit {code}) before the moment to kill it"}
        try:
            row["killed"] = case.at_kill(out, log)
        except AssertionError as missed:
            return {**row, "error": f"killed at the wrong moment: {missed}"}
        row["killed_after_s"] = round(time.time() - started, 1)
    before = len(read_lines(log))
    code, _ = run(command, log)
    if code != 0:
        return {**row, "error": f"the rerun failed (exit {code})"}
    # whether the last run encoded the latent cache itself (its progress bar) or found it on disk
    row["latent_cache_built_by_last_run"] = any("latent cache:" in line for line in read_lines(log)[before:])
    if case.name == "d" and row["latent_cache_built_by_last_run"]:
        return {**row, "error": "the latent cache copied from the straight run was built again"}
    found = compare(comparable(straight / "results.json", straight), comparable(out / "results.json", out))
    return {**row, "numbers": found.numbers, "numbers_differ": found.numbers_differ, "others": found.others,
            "others_differ": found.others_differ, "differences": found.differences[:20]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/interrupt"))
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--steps", type=int, default=250, help="the fit's steps (checkpoints every 100)")
    parser.add_argument("--kill-step", type=int, default=150, help="case b: kill at this step or later")
    parser.add_argument("--eval-images", type=int, default=4, help="case c: kill after this many images")
    parser.add_argument("--extra", default="[]", help="a JSON list of more arguments for every run")
    args = parser.parse_args(argv)
    KILL_STEP[0], EVAL_IMAGES[0] = args.kill_step, args.eval_images
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if work.is_relative_to(REPO):  # the runs write paths relative to the repository, as typed by hand
        work = work.relative_to(REPO)
    os.chdir(REPO)
    rows = []
    for name in args.cases:
        row = run_case(CASES[name], work, args.steps, json.loads(args.extra))
        rows.append(row)
        print(json.dumps(row), flush=True)
    (work / f"summary-{'-'.join(args.cases)}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{'case':<12} {'killed':<70} {'numbers':>8} {'differ':>7} {'others':>7} {'differ':>7}")
    for row in rows:
        if "error" in row:
            print(f"{row['case']:<12} ERROR: {row['error']}")
            continue
        print(f"{row['case']:<12} {row.get('killed', '-'):<70} {row['numbers']:>8} {row['numbers_differ']:>7} "
              f"{row['others']:>7} {row['others_differ']:>7}")  # fmt: skip
        for line in row["differences"]:
            print(f"    {line}")
    bad = [row for row in rows if "error" in row or row["numbers_differ"] or row["others_differ"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
