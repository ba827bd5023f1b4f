"""`experiment --status`: one row per unit (state, job id, elapsed time, log), aligned for a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from cxr_ldm.experiments.progress import clock
from cxr_ldm.experiments.unit_records import UnitState


def status_table(states: Sequence[UnitState]) -> str:
    rows = [("unit", "state", "job", "elapsed", "log")]
    for s in states:
        state = f"{s.state} ({s.detail.lower()})" if s.detail and s.detail != "RUNNING" else s.state
        rows.append(
            (s.name, state, s.job_id or "-", "-" if s.seconds is None else clock(s.seconds), s.log or "-")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4]
             for row in rows]  # fmt: skip
    counts = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return "\n".join(line.rstrip() for line in lines)


__all__ = ["status_table"]
