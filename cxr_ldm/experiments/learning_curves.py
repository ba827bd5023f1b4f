"""The report's learning curves: the probe's macro balanced accuracy against the training step for every arm
(mean over seeds, with the seeds' min-max band) under the evaluator's ceiling (its macro balanced accuracy on
the real test images), and each arm's convergence beside its final protocol number."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from cxr_ldm.evaluation.metrics.metric_names import BALANCED_ACCURACY
from cxr_ldm.experiments.spec import ExperimentConfig

PROBE_BA = "probe/cond_balanced_accuracy"


def curves(results: dict) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """`{arm: {seed: [(step, value), ...]}}` of the runs that recorded a learning curve."""
    out: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for name, seeds in results["arms"].items():
        for run in seeds.values():
            records = (run.get("learning_curve") or {}).get("records") or []
            if records:
                out.setdefault(name, {})[int(run["seed"])] = [(r["step"], r["value"]) for r in records]
    return out


def learning_curve_figure(folder: Path, results: dict) -> Path | None:
    """`learning_curves.png` under `folder`, or None when no run recorded a curve."""
    drawn = curves(results)
    if not drawn:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    for name, seeds in drawn.items():
        steps = sorted({step for points in seeds.values() for step, _ in points})
        at = [[v for points in seeds.values() for s, v in points if s == step] for step in steps]
        means = [statistics.fmean(values) for values in at]
        (line,) = axes.plot(
            steps,
            means,
            marker="o",
            markersize=3,
            label=f"{name} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
        )
        axes.fill_between(
            steps, [min(v) for v in at], [max(v) for v in at], color=line.get_color(), alpha=0.2
        )
    axes.axhline(0.5, color="#999999", linestyle=":", linewidth=1)
    ceiling = results.get("summary", {}).get("real_test", {}).get(BALANCED_ACCURACY)
    if ceiling is not None:  # what the evaluator gives the real test images: the probe's ceiling
        axes.axhline(ceiling["mean"], color="#c44e52", linestyle="--", linewidth=1, label="real test images")
    axes.set_xlabel("training step")
    axes.set_ylabel("probe balanced accuracy (macro)")
    axes.set_title("learning curves: mean over seeds, band = min-max", fontsize=9)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "learning_curves.png"
    figure.savefig(path)
    plt.close(figure)
    return path


def convergence_table(config: ExperimentConfig, results: dict) -> list[str]:
    """Markdown: per arm and seed, its convergence, the probe's best, and the final protocol number."""
    statuses = results.get("convergence", {})
    spec = config.convergence
    lines = []
    if spec is not None:
        lines += [
            f"Every {spec.every_n_steps} steps a probe of {spec.images_per_finding} images per finding "
            f"({spec.sample_steps} sampler steps) measures the macro balanced accuracy; a fit stops after "
            f"{spec.patience} probes without a rise above {spec.min_delta:g} (cap: "
            f"{config.steps if config.steps is not None else 'each config'} steps). A claim comparing an arm "
            "still rising at the cap is undecided.",
            "",
        ]
    lines += [
        "| arm | seed | convergence | probe's best (step) | final protocol probe BA macro |",
        "|---|---|---|---|---|",
    ]
    for arm in config.arms:
        for key, run in results["arms"].get(arm.name, {}).items():
            found = statuses.get(arm.name, {}).get(int(run["seed"]), {})
            best = found.get("best")
            best_cell = f"{best:.3f} ({found.get('best_step')})" if best is not None else ""
            final = run["metrics"].get("probe", {}).get("cond_balanced_accuracy", math.nan)
            final_cell = f"{final:.3f}" if isinstance(final, float) and math.isfinite(final) else ""
            lines.append(f"| {arm.name} | {key[4:]} | {found.get('text', '')} | {best_cell} | {final_cell} |")
    return lines
