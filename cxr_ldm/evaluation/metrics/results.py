"""Metric values plus the metrics that were skipped and why, written as metrics.json and metrics.md."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from cxr_ldm.data.atomic import write_text_atomic


@dataclass
class MetricReport:
    values: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            if isinstance(value, float) and math.isnan(value):
                self.skipped[key] = "undefined on this data (NaN)"
            else:
                self.values[key] = float(value)

    def skip(self, keys: list[str] | tuple[str, ...], reason: str) -> None:
        for key in keys:
            self.skipped[key] = reason

    def as_json(self) -> dict:
        """Flat metric keys at the top level; `skipped` (key -> reason) and `info` beside them."""
        return {
            **dict(sorted(self.values.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "info": self.info,
        }

    def markdown(self) -> str:
        lines = ["| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {v:.4f} |" for k, v in sorted(self.values.items())]
        lines += [f"| `{k}` | skipped: {reason} |" for k, reason in sorted(self.skipped.items())]
        if self.info:
            lines += ["", *[f"- {k}: {v}" for k, v in self.info.items()]]
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "metrics.json", json.dumps(self.as_json(), indent=2) + "\n")
        write_text_atomic(out / "metrics.md", self.markdown())
        return out / "metrics.json"
