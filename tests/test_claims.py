"""The claims checker on hand-made results: holds, fails, ties within the spread, margins, missing groups."""

from __future__ import annotations

import pytest

from cxr_ldm.experiments.claims import FAILS, HOLDS, MISSING, TIE, check_claims, compare
from cxr_ldm.experiments.spec import ClaimSpec, Comparison

M = "probe/cond_balanced_accuracy"


def greater(a: str = "a", b: str = "b", margin: float = 0.0) -> Comparison:
    return Comparison(a=a, b=b, metric=M, relation="greater", margin=margin)


def at_least(margin: float = 0.0) -> Comparison:
    return Comparison(a="a", b="b", metric=M, relation="at_least", margin=margin)


@pytest.mark.parametrize(
    ("a", "b", "comparison", "verdict"),
    [
        ([0.80, 0.82, 0.81], [0.60, 0.62, 0.61], greater(), HOLDS),  # far apart, small spread
        ([0.60, 0.62, 0.61], [0.80, 0.82, 0.81], greater(), FAILS),  # reversed
        (
            [0.70, 0.80, 0.60],
            [0.68, 0.78, 0.62],
            greater(),
            TIE,
        ),  # the difference is inside the seeds' spread
        ([0.80, 0.82, 0.81], [0.78, 0.80, 0.79], greater(margin=0.1), FAILS),  # not above by the margin
        ([0.70, 0.80, 0.60], [0.68, 0.78, 0.62], at_least(), TIE),  # consistent with a >= b
        ([0.60, 0.61, 0.62], [0.80, 0.81, 0.82], at_least(), FAILS),
        ([0.88], [0.91], at_least(margin=0.05), HOLDS),  # ceilings: one value each, within the margin
        ([0.80], [0.91], at_least(margin=0.05), FAILS),
    ],
)
def test_compare(a, b, comparison, verdict) -> None:
    assert compare(comparison, a, b).verdict == verdict


def test_spread_is_two_standard_errors_of_the_difference() -> None:
    result = compare(greater(), [1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert result.difference == pytest.approx(2.0)
    assert result.spread == pytest.approx(2 * (1.0 / 3) ** 0.5)
    assert result.verdict == HOLDS


def test_a_claim_holds_only_when_every_comparison_holds() -> None:
    values = {
        "unet": {M: [0.80, 0.81, 0.82]},
        "inversion": {M: [0.60, 0.61, 0.62]},
        "projection": {M: [0.59, 0.61, 0.63]},
    }
    claim = ClaimSpec(id="C2", text="unet > inversion > projection",
                      comparisons=[greater("unet", "inversion"), greater("inversion", "projection")])  # fmt: skip
    (result,) = check_claims([claim], values)
    assert [p.verdict for p in result.comparisons] == [HOLDS, TIE]
    assert result.verdict == TIE
    assert not result.verdict.startswith(HOLDS)
    values["projection"][M] = [0.40, 0.41, 0.42]
    assert check_claims([claim], values)[0].verdict == HOLDS
    values["inversion"][M] = [0.90, 0.91, 0.92]
    assert check_claims([claim], values)[0].verdict == FAILS


def test_at_least_ties_hold_within_the_spread_and_missing_groups_are_said() -> None:
    values = {"a": {M: [0.70, 0.80, 0.60]}, "b": {M: [0.68, 0.78, 0.62]}}
    (result,) = check_claims([ClaimSpec(id="C1", text="a >= b", comparisons=[at_least()])], values)
    assert result.verdict == f"{HOLDS} (within the spread)"
    (missing,) = check_claims([ClaimSpec(id="C3", text="x", comparisons=[greater("a", "zzz")])], values)
    assert missing.verdict == MISSING and "not measured" in missing.comparisons[0].describe()
