"""One line per stage of an experiment: what finished, how long it took, the time so far and an estimate of
what is left (the mean time of the units computed in this run times the units still to do)."""

from __future__ import annotations

import statistics
import sys
import time


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


class StageLog:
    """`[name] stage: 41 s (elapsed 3m10s; about 12m00s left for 6 units)` lines on stderr."""

    def __init__(self, name: str, units: int = 0, stream=None) -> None:
        self.name, self.units = name, units
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.last = self.started
        self.unit_seconds: list[float] = []
        self.times: dict[str, float] = {}
        self.done_units = 0

    def line(self, text: str) -> None:
        print(f"[{self.name}] {text}", file=self.stream, flush=True)

    def stage(self, label: str, unit: bool = False, unit_before: float = 0.0) -> float:
        """Close the stage that began at the last call. `unit`: it ends a unit of work, which took this stage
        plus `unit_before` seconds of earlier stages; finished units give the estimate of what is left."""
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        self.times[label] = round(seconds, 1)
        if unit:
            self.unit_seconds.append(seconds + unit_before)
            self.done_units += 1
        left = ""
        remaining = self.units - self.done_units
        if unit and remaining > 0:
            left = (
                f"; about {clock(statistics.fmean(self.unit_seconds) * remaining)} left for {remaining} more"
            )
        self.line(f"{label}: {seconds:.0f} s (elapsed {clock(now - self.started)}{left})")
        return seconds

    def skip(self, label: str) -> None:
        """A unit finished by an earlier run: reused, not counted in the estimate."""
        self.units -= 1
        self.last = time.perf_counter()
        self.line(f"{label}: done earlier, reused")
