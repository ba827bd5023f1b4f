"""The papers' claims checked against the seeds' results: holds, fails, or a tie within the spread.

A comparison of group `a` with group `b` on one metric uses the difference of their means over seeds and
its spread, two standard errors of that difference: `2 * sqrt(sd_a^2 / n_a + sd_b^2 / n_b)` (a group with one
value, e.g. a ceiling measured once, contributes no spread). With a margin m:

- `greater`: holds when diff > spread; fails when diff < -spread; otherwise a tie (the claim is not shown).
- `at_least` (a >= b - m): fails when diff + m < -spread; holds when diff + m > spread; otherwise a tie,
  which is consistent with the claim ("holds within the spread").

A claim holds when all its comparisons hold, fails when any fails, and is otherwise reported as a tie.
Nothing here is tuned to the numbers: the rule is fixed before any result is read.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from cxr_ldm.experiments.spec import ClaimSpec, Comparison

HOLDS, FAILS, TIE, MISSING = "holds", "does not hold", "tie within the spread", "not measured"


@dataclass
class ComparisonResult:
    comparison: Comparison
    verdict: str
    a_values: list[float]
    b_values: list[float]
    difference: float
    spread: float

    def describe(self) -> str:
        c = self.comparison
        if self.verdict == MISSING:
            return f"{c.a} vs {c.b} on {c.metric}: not measured"
        sign = ">" if c.relation == "greater" else ">="
        margin = f" {'+' if c.relation == 'greater' else '-'} {c.margin:g}" if c.margin else ""
        single = (
            " (one value on each side: no spread to judge by)"
            if max(len(self.a_values), len(self.b_values)) < 2
            else ""
        )
        return (
            f"{c.a} {mean_sd(self.a_values)} {sign} {c.b} {mean_sd(self.b_values)}{margin} on {c.metric}: "
            f"difference {self.difference:+.3f}, spread ±{self.spread:.3f} -> {self.verdict}{single}"
        )


@dataclass
class ClaimResult:
    claim: ClaimSpec
    verdict: str
    comparisons: list[ComparisonResult]


def mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def _spread(values: list[float]) -> float:
    return statistics.variance(values) / len(values) if len(values) > 1 else 0.0


def compare(comparison: Comparison, a: list[float], b: list[float]) -> ComparisonResult:
    a = [v for v in a if math.isfinite(v)]
    b = [v for v in b if math.isfinite(v)]
    if not a or not b:
        return ComparisonResult(comparison, MISSING, a, b, math.nan, math.nan)
    difference = statistics.fmean(a) - statistics.fmean(b)
    spread = 2 * math.sqrt(_spread(a) + _spread(b))
    shifted = difference + (comparison.margin if comparison.relation == "at_least" else 0.0)
    if comparison.relation == "greater":
        shifted -= comparison.margin
    if shifted > spread:
        verdict = HOLDS
    elif shifted < -spread:
        verdict = FAILS
    else:
        verdict = TIE
    return ComparisonResult(comparison, verdict, a, b, difference, spread)


def add_values(values: dict[str, dict[str, list[float]]], group: str, flat: dict[str, float]) -> None:
    """Append one seed's metrics (`{metric: value}`) to `values[group][metric]`."""
    for metric, value in flat.items():
        values.setdefault(group, {}).setdefault(metric, []).append(value)


def check_claims(claims: list[ClaimSpec], values: dict[str, dict[str, list[float]]]) -> list[ClaimResult]:
    """`values[group][metric]` = one value per seed. Each claim's verdict from its comparisons."""
    results = []
    for claim in claims:
        parts = [
            compare(c, values.get(c.a, {}).get(c.metric, []), values.get(c.b, {}).get(c.metric, []))
            for c in claim.comparisons
        ]
        verdicts = {part.verdict for part in parts}
        if MISSING in verdicts:
            verdict = MISSING
        elif FAILS in verdicts:
            verdict = FAILS
        elif verdicts == {HOLDS}:
            verdict = HOLDS
        elif all(p.verdict == HOLDS or p.comparison.relation == "at_least" for p in parts):
            verdict = f"{HOLDS} (within the spread)"
        else:
            verdict = TIE
        results.append(ClaimResult(claim, verdict, parts))
    return results
