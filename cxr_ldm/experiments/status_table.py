"""`experiment --status`: one row per unit (state, job id, elapsed time, log), aligned for a terminal.

The elapsed time is the current attempt's (a running unit: since its job last started; a done one: how long
its last start took to finish it). A job requeued by the cluster (preempted, timed out) starts again: then
the cell also says which attempt it is and the time since the job's first start, e.g.
`1m11s (attempt 2, 6m02s in all)`."""

from __future__ import annotations

from collections.abc import Sequence

from cxr_ldm.experiments.progress import clock
from cxr_ldm.experiments.unit_records import UnitState


def elapsed(state: UnitState) -> str:
    """The elapsed cell: the current attempt's time, and with more than one attempt the time in all."""
    if state.seconds is None:
        return "-"
    if not state.attempts or state.attempts < 2 or state.since_first is None:
        return clock(state.seconds)
    return f"{clock(state.seconds)} (attempt {state.attempts}, {clock(state.since_first)} in all)"


def status_table(states: Sequence[UnitState]) -> str:
    rows = [("unit", "state", "job", "elapsed", "log")]
    for s in states:
        detail = (
            s.detail.lower() if s.detail.isalpha() else s.detail
        )  # squeue's PENDING, REQUEUED: lower case
        state = f"{s.state} ({detail})" if s.detail and s.detail != "RUNNING" else s.state
        rows.append((s.name, state, s.job_id or "-", elapsed(s), s.log or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4]
             for row in rows]  # fmt: skip
    counts = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return "\n".join(line.rstrip() for line in lines)


__all__ = ["elapsed", "status_table"]
