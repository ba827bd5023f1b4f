"""Per-arm result files (atomic), the aggregated table (mean and std over seeds), JSON, PNG and TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cxr_ldm.augmentation.plan import Arm
from cxr_ldm.data.atomic import write_text_atomic


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
    """One row per (size, condition): mean and std over seeds of every metric."""
    keys = ["auroc", "accuracy", "balanced_accuracy"]
    keys += [f"{m}/{f}" for f in findings for m in ("auroc", "accuracy", "balanced_accuracy")]
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
            row[f"{key}/std"] = float(np.std(values)) if len(values) > 1 else 0.0 if values else math.nan
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
            _cell(row, "auroc"),
            _cell(row, "accuracy"),
            _cell(row, "balanced_accuracy"),
        ]
        cells += [_cell(row, f"auroc/{f}") for f in findings] + [
            _cell(row, f"accuracy/{f}") for f in findings
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


COLOURS = [(66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188), (0, 172, 193)]


def bar_chart(
    rows: list[dict], sizes: list[int], conditions: list[str], metric: str = "auroc"
) -> Image.Image:
    """Grouped bars (one group per size, one bar per condition) of the mean with a ±std whisker.

    Drawn with Pillow, so the plot needs no plotting library.
    """
    width, height, left, bottom, top = 160 + 150 * len(sizes), 360, 60, 50, 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    plot_h = height - bottom - top
    lookup = {(r["size"], r["condition"]): r for r in rows}

    def y_of(value: float) -> float:
        return top + plot_h * (1 - max(0.0, min(1.0, value)))

    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(tick)
        draw.line([(left, y), (width - 150, y)], fill=(225, 225, 225))
        draw.text((left - 35, y - 6), f"{tick:.2f}", fill="black")
    group_w = (width - 150 - left) / max(1, len(sizes))
    bar_w = group_w * 0.8 / max(1, len(conditions))
    for g, size in enumerate(sizes):
        x0 = left + g * group_w + group_w * 0.1
        for c, condition in enumerate(conditions):
            row = lookup.get((size, condition))
            if row is None or math.isnan(row.get(f"{metric}/mean", math.nan)):
                continue
            mean, std = row[f"{metric}/mean"], row[f"{metric}/std"]
            x = x0 + c * bar_w
            draw.rectangle([x, y_of(mean), x + bar_w - 2, y_of(0)], fill=COLOURS[c % len(COLOURS)])
            mid = x + bar_w / 2 - 1
            draw.line([(mid, y_of(mean - std)), (mid, y_of(mean + std))], fill="black", width=1)
        draw.text((x0 + group_w * 0.3, height - bottom + 8), f"n={size}", fill="black")
    draw.line([(left, top), (left, y_of(0)), (width - 150, y_of(0))], fill="black")
    draw.text((left, 8), f"macro {metric} on real test images (mean ± std over seeds)", fill="black")
    for c, condition in enumerate(conditions):
        y = top + 18 * c
        draw.rectangle([width - 140, y, width - 128, y + 12], fill=COLOURS[c % len(COLOURS)])
        draw.text((width - 122, y), condition, fill="black")
    return image


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
    plot.save(tmp, format="PNG")
    tmp.replace(paths["plot"])
    paths["tensorboard"] = write_tensorboard(out / "tensorboard", rows, plot)
    return paths


def write_tensorboard(folder: Path, rows: list[dict], plot: Image.Image) -> Path:
    """Scalars `augment/<metric>/<condition>` at step = real-set size, and the bar chart as an image."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    try:
        for row in rows:
            for metric in ("auroc", "accuracy"):
                value = row.get(f"{metric}/mean", math.nan)
                if not math.isnan(value):
                    writer.add_scalar(f"augment/{metric}/{row['condition']}", value, row["size"])
        writer.add_image("augment/results", np.asarray(plot), 0, dataformats="HWC")
    finally:
        writer.close()
    return folder
