"""The papers' claims checked against the seeds' results: holds, fails, or a tie within the spread.

A comparison of group `a` with group `b` on one metric uses the difference of their means over seeds and
its spread, two standard errors of that difference: `2 * sqrt(sd_a^2 / n_a + sd_b^2 / n_b)` (a group with one
value, e.g. a ceiling measured once, contributes no spread). With a margin m, and diff the difference of the
means in the claim's direction (a - b; b - a for a metric that is better lower, such as FID):

- `greater`: holds when diff - m > spread; fails when diff - m < -spread; otherwise a tie (the claim is not shown).
- `at_least` (a >= b - m): fails when diff + m < -spread; holds when diff + m > spread; otherwise a tie,
  which is consistent with the claim ("holds within the spread").

Before that rule, three cases are not judged by it:

- `undecided`: a side is an arm still rising at the cap of its training (its learning curve had not reached
  a plateau, experiments/convergence.py); a claim about a model still learning is never given a verdict.
- `one seed: not judged`: a side that depends on the training seed (an arm, a follow-up's group) has one
  value: its spread over seeds is unknown, so no difference can be judged against it (the other side's spread
  alone would stand in for it). A seed without a value (a metric not measured for it) is left out and the
  verdict says how many of a side's seeds were measured.
- a threshold on deterministic references: both sides are measured once and do not depend on a seed
  (`real_test`, `vae_reconstructions`, `baseline`: REFERENCE_GROUPS); the margin alone decides, and the
  verdict says so.

A claim is undecided when any comparison is, not judged when any is not judged, otherwise it holds when all
its comparisons hold, fails when any fails, and is otherwise reported as a tie.
Nothing here is tuned to the numbers: the rule is fixed before any result is read.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from cxr_ldm.experiments.spec import REFERENCE_GROUPS, ClaimSpec, Comparison

HOLDS, FAILS, TIE, MISSING = "holds", "does not hold", "tie within the spread", "not measured"
NOT_JUDGED, UNDECIDED = "one seed: not judged", "undecided"
THRESHOLD = "a threshold on deterministic references"


@dataclass
class ComparisonResult:
    comparison: Comparison
    verdict: str
    a_values: list[float]
    b_values: list[float]
    difference: float
    spread: float
    note: str = ""  # why the rule was not applied (undecided, one seed) or how it was (a threshold)

    def describe(self) -> str:
        c = self.comparison
        if self.verdict == MISSING:
            return f"{c.a} vs {c.b} on {c.metric}: not measured"
        lower = c.direction() == "lower"
        sign = {
            (False, "greater"): ">",
            (False, "at_least"): ">=",
            (True, "greater"): "<",
            (True, "at_least"): "<=",
        }
        ahead = (c.relation == "greater") != lower  # the margin is added to b when a must be above it
        margin = f" {'+' if ahead else '-'} {c.margin:g}" if c.margin else ""
        note = f" ({self.note})" if self.note else ""
        better = " (lower is better)" if lower else ""
        return (
            f"{c.a} {mean_sd(self.a_values)} {sign[lower, c.relation]} {c.b} {mean_sd(self.b_values)}{margin} "
            f"on {c.metric}{better}: "
            f"difference {self.difference:+.3f}, spread ±{self.spread:.3f} -> {self.verdict}{note}"
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


def seeded(group: str) -> bool:
    """Whether a group's values depend on the training seed (every group but the references measured once)."""
    return group not in REFERENCE_GROUPS


def compare(
    comparison: Comparison, a: list[float], b: list[float], rising: Mapping[str, str] | None = None
) -> ComparisonResult:
    """The verdict of one comparison; `rising` maps a group still rising at its cap to why (its seeds).
    A seed without a value (NaN: not measured, e.g. a metric skipped for that seed) is left out and said."""
    lost = [
        f"{group}: {sum(math.isfinite(v) for v in seq)} of {len(seq)} seeds measured"
        for group, seq in ((comparison.a, a), (comparison.b, b))
        if not all(math.isfinite(v) for v in seq)
    ]
    a = [v for v in a if math.isfinite(v)]
    b = [v for v in b if math.isfinite(v)]
    if not a or not b:
        return ComparisonResult(comparison, MISSING, a, b, math.nan, math.nan, "; ".join(lost))
    result = _judge(comparison, a, b, rising)
    if lost:
        result.note = "; ".join([*lost, *([result.note] if result.note else [])])
    return result


def _judge(
    comparison: Comparison, a: list[float], b: list[float], rising: Mapping[str, str] | None
) -> ComparisonResult:
    difference = statistics.fmean(a) - statistics.fmean(b)
    spread = 2 * math.sqrt(_spread(a) + _spread(b))
    still = [
        f"{group} {(rising or {})[group]}"
        for group in (comparison.a, comparison.b)
        if group in (rising or {})
    ]
    if still:
        note = "; ".join(still) + ": a model still learning is not judged"
        return ComparisonResult(comparison, UNDECIDED, a, b, difference, spread, note)
    single = max(len(a), len(b)) < 2
    alone = [group for group, seq in ((comparison.a, a), (comparison.b, b)) if seeded(group) and len(seq) < 2]
    if alone:
        # the other side's spread alone would stand in for this side's unknown one
        note = f"one seed of {' and '.join(alone)}, which depends on the training seed: no spread to judge by"
        return ComparisonResult(comparison, NOT_JUDGED, a, b, difference, spread, note)
    note = f"{THRESHOLD}: each measured once, the margin alone decides" if single else ""
    # in the claim's direction: positive when a is better than b
    shifted = (-difference if comparison.direction() == "lower" else difference) + (
        comparison.margin if comparison.relation == "at_least" else 0.0
    )
    if comparison.relation == "greater":
        shifted -= comparison.margin
    if shifted > spread:
        verdict = HOLDS
    elif shifted < -spread:
        verdict = FAILS
    else:
        verdict = TIE
    return ComparisonResult(comparison, verdict, a, b, difference, spread, note)


def flatten(results: dict, prefix: str = "") -> dict[str, float]:
    """`{"probe": {"cond_auroc": 0.9}}` -> `{"probe/cond_auroc": 0.9}` (numbers only)."""
    flat = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def add_values(values: dict[str, dict[str, list[float]]], group: str, flat: dict[str, float]) -> None:
    """Append one seed's metrics (`{metric: value}`) to `values[group][metric]`, NaN for a metric that other
    seeds of the group have and this one lacks (or the other way round): a list holds one entry per seed."""
    metrics = values.setdefault(group, {})
    seeds = max((len(seq) for seq in metrics.values()), default=0)
    for metric in [*metrics, *(metric for metric in flat if metric not in metrics)]:  # a stable order
        metrics.setdefault(metric, [math.nan] * seeds).append(flat.get(metric, math.nan))


def check_claims(
    claims: list[ClaimSpec],
    values: dict[str, dict[str, list[float]]],
    rising: Mapping[str, str] | None = None,
) -> list[ClaimResult]:
    """`values[group][metric]` = one value per seed; `rising`: the groups still rising at the cap of their
    training (group -> which seeds). Each claim's verdict from its comparisons."""
    results = []
    for claim in claims:
        parts = [
            compare(c, values.get(c.a, {}).get(c.metric, []), values.get(c.b, {}).get(c.metric, []), rising)
            for c in claim.comparisons
        ]
        verdicts = {part.verdict for part in parts}
        if MISSING in verdicts:
            verdict = MISSING
        elif UNDECIDED in verdicts:
            verdict = UNDECIDED
        elif NOT_JUDGED in verdicts:
            verdict = NOT_JUDGED
        elif FAILS in verdicts:
            verdict = FAILS
        elif verdicts == {HOLDS}:
            verdict = HOLDS
        elif all(p.verdict == HOLDS or p.comparison.relation == "at_least" for p in parts):
            verdict = f"{HOLDS} (within the spread)"
        else:
            verdict = TIE
        if verdict != MISSING and all(part.note.startswith(THRESHOLD) for part in parts):
            verdict = f"{verdict} ({THRESHOLD})"
        results.append(ClaimResult(claim, verdict, parts))
    return results
