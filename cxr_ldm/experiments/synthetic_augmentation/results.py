"""Per-arm result files (atomic), the aggregated table (mean and sample sd over seeds), JSON, PNG and TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cxr_ldm.data.atomic import write_text_atomic
from cxr_ldm.evaluation.metrics.metric_names import ACCURACY, AUROC, BALANCED_ACCURACY, CLASSIFICATION
from cxr_ldm.experiments.synthetic_augmentation.plan import Arm


def write_arm_result(arm: Arm, out: str | Path, result: dict) -> Path:
    """Write one finished arm (temp file + os.replace): a crash never leaves a half-written result."""
    path = arm.result_path(out)
    payload = {"size": arm.size, "condition": arm.condition, "seed": arm.seed, **result}
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
    return path


def read_arm_result(arm: Arm, out: str | Path) -> dict | None:
    """The arm's result, or None when it has not finished (or its file is unreadable)."""
    path = arm.result_path(out)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def aggregate(results: list[dict], findings: list[str]) -> list[dict]:
    """One row per (size, condition): mean and sample sd (ddof 1) over seeds, as every report of this project of every metric."""
    keys = list(CLASSIFICATION)
    keys += [f"{m}/{f}" for f in findings for m in CLASSIFICATION]
    groups: dict[tuple[int, str], list[dict]] = {}
    for result in results:
        groups.setdefault((result["size"], result["condition"]), []).append(result)
    rows = []
    for (size, condition), members in groups.items():
        row = {
            "size": size,
            "condition": condition,
            "seeds": len(members),
            "train_images": members[0]["train_images"],
        }
        for key in keys:
            values = [m["metrics"][key] for m in members if key in m["metrics"]]
            row[f"{key}/mean"] = float(np.mean(values)) if values else math.nan
            row[f"{key}/std"] = (
                float(np.std(values, ddof=1)) if len(values) > 1 else 0.0 if values else math.nan
            )
        rows.append(row)
    return rows


def _cell(row: dict, key: str) -> str:
    mean, std = row.get(f"{key}/mean", math.nan), row.get(f"{key}/std", math.nan)
    return "n/a" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"


def markdown_table(rows: list[dict], findings: list[str]) -> str:
    """Mean ± std over seeds of macro AUROC, accuracy (at 0.5) and balanced accuracy, and per-finding AUROC and
    accuracy."""
    head = ["size", "condition", "train images", "AUROC", "accuracy", "balanced accuracy"]
    head += [f"AUROC {f}" for f in findings] + [f"acc {f}" for f in findings]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            str(row["size"]),
            row["condition"],
            str(row["train_images"]),
            _cell(row, AUROC),
            _cell(row, ACCURACY),
            _cell(row, BALANCED_ACCURACY),
        ]
        cells += [_cell(row, f"{AUROC}/{f}") for f in findings] + [
            _cell(row, f"{ACCURACY}/{f}") for f in findings
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict], sizes: list[int], conditions: list[str], metric: str = AUROC) -> Figure:
    """Grouped bars (one group per size, one bar per condition) of the mean with a ±std error bar."""
    figure = Figure(figsize=(1.6 + 1.5 * len(sizes), 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    lookup = {(r["size"], r["condition"]): r for r in rows}
    width = 0.8 / max(1, len(conditions))
    for c, condition in enumerate(conditions):
        found = [lookup.get((size, condition), {}) for size in sizes]
        means = np.array([row.get(f"{metric}/mean", math.nan) for row in found])
        stds = np.array([row.get(f"{metric}/std", math.nan) for row in found])
        shown = ~np.isnan(means)
        x = np.arange(len(sizes))[shown] - 0.4 + width * (c + 0.5)
        axes.bar(x, means[shown], width * 0.95, yerr=stds[shown], capsize=2, label=condition)
    axes.set_xticks(range(len(sizes)), [f"n={size}" for size in sizes])
    axes.set_ylim(0, 1)
    axes.grid(axis="y", color="0.9")
    axes.set_axisbelow(True)
    axes.set_title(f"macro {metric} on real test images (mean ± std over seeds)", fontsize=9)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return figure


def _rgb(figure: Figure) -> np.ndarray:
    """The figure rendered (Agg) as an (H, W, 3) uint8 array."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def write_outputs(
    out: str | Path, results: list[dict], findings: list[str], sizes: list[int], conditions: list[str]
) -> dict[str, Path]:
    """results.json, results.md, results.png and TensorBoard scalars + figure under `out`."""
    out = Path(out)
    rows = aggregate(results, findings)
    paths = {"json": out / "results.json", "table": out / "results.md", "plot": out / "results.png"}
    payload = {
        "findings": findings,
        "sizes": sizes,
        "conditions": conditions,
        "summary": rows,
        "arms": results,
    }
    write_text_atomic(paths["json"], json.dumps(payload, indent=2, allow_nan=True) + "\n")
    write_text_atomic(paths["table"], markdown_table(rows, findings))
    plot = bar_chart(rows, sizes, conditions)
    tmp = paths["plot"].with_name(".results.png.tmp")
    plot.savefig(tmp, format="png")
    tmp.replace(paths["plot"])
    paths["tensorboard"] = write_tensorboard(out / "tensorboard", rows, _rgb(plot))
    return paths


def write_tensorboard(folder: Path, rows: list[dict], plot: np.ndarray) -> Path:
    """Scalars `augment/<metric>/<condition>` at step = real-set size, and the bar chart (H, W, 3 RGB)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    try:
        for row in rows:
            for metric in (AUROC, ACCURACY):
                value = row.get(f"{metric}/mean", math.nan)
                if not math.isnan(value):
                    writer.add_scalar(f"augment/{metric}/{row['condition']}", value, row["size"])
        writer.add_image("augment/results", plot, 0, dataformats="HWC")
    finally:
        writer.close()
    return folder
