"""The claims checker on hand-made results: holds, fails, ties within the spread, margins, missing groups."""

from __future__ import annotations

import pytest

from cxr_ldm.experiments.claims import FAILS, HOLDS, MISSING, NOT_JUDGED, TIE, check_claims, compare
from cxr_ldm.experiments.spec import ClaimSpec, Comparison

M = "probe/cond_balanced_accuracy"


def greater(a: str = "a", b: str = "b", margin: float = 0.0) -> Comparison:
    return Comparison(a=a, b=b, metric=M, relation="greater", margin=margin)


def at_least(margin: float = 0.0, a: str = "a", b: str = "b") -> Comparison:
    return Comparison(a=a, b=b, metric=M, relation="at_least", margin=margin)


CEILINGS = {"a": "vae_reconstructions", "b": "real_test"}  # references measured once


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
        ([0.88], [0.91], at_least(0.05, **CEILINGS), HOLDS),  # ceilings: one value each, within the margin
        ([0.80], [0.91], at_least(0.05, **CEILINGS), FAILS),
        ([0.88], [0.91], at_least(0.05), NOT_JUDGED),  # one value of seed-dependent groups: not judged
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


# Verdicts of the experiments' own claims (configs/experiments/*.yaml), on results shaped as the engine
# writes them (arms/<arm>/seed<k>/result.json, evaluator/ceilings.json), assembled as the report does.


def experiment(name: str):
    from _tiny_run import ROOT

    from cxr_ldm.commands.experiment import parse_experiment

    config, _ = parse_experiment(["--config", str(ROOT / "configs" / "experiments" / name)])
    return config


def ceilings(real: float = 0.90, reconstructed: float = 0.88) -> dict:
    return {"real_test": {"balanced_accuracy": real}, "vae_reconstructions": {"balanced_accuracy": reconstructed},
            "thresholds": {}, "validate_vs_test": {"fid": 1.0}}  # fmt: skip


def arm_results(per_arm: dict[str, list[float]], extra: dict | None = None) -> dict:
    """`{arm: {seed: result}}` as the engine keeps them, probe macro balanced accuracy per seed."""
    return {
        arm: {seed: {"arm": arm, "seed": seed, "metrics": {"probe": {"cond_balanced_accuracy": value}},
                     **(extra or {}).get(arm, {}).get(seed, {})}
              for seed, value in enumerate(values)}
        for arm, values in per_arm.items()
    }  # fmt: skip


def verdicts(config, arms: dict, baseline: float = 0.5) -> dict[str, dict]:
    from cxr_ldm.experiments.report import assemble_results

    baseline_metrics = {"probe": {"cond_balanced_accuracy": baseline}}
    results = assemble_results(config, ceilings(), baseline_metrics, arms, [], {})
    return {claim["id"]: claim for claim in results["claims"]}


def test_the_demo_claim_on_one_seed_is_not_judged_and_on_three_seeds_it_is() -> None:
    config = experiment("demo.yaml")
    assert config.seeds == [0]
    one = verdicts(config, arm_results({"unet-text": [0.85]}))["learns"]
    assert one["verdict"] == NOT_JUDGED
    assert "no spread to judge by" in one["comparisons"][0]["text"]
    three = verdicts(config, arm_results({"unet-text": [0.84, 0.86, 0.85]}))["learns"]
    assert three["verdict"] == HOLDS
    tied = verdicts(config, arm_results({"unet-text": [0.40, 0.62, 0.51]}))["learns"]
    assert tied["verdict"] == TIE


def test_a_threshold_on_deterministic_references_says_it_is_one() -> None:
    from cxr_ldm.experiments.claims import THRESHOLD

    config = experiment("paper.yaml")
    c6 = verdicts(config, arm_results({"unet-text": [0.6, 0.61, 0.62]}))["C6"]
    assert c6["verdict"] == f"{HOLDS} ({THRESHOLD})"
    assert THRESHOLD in c6["comparisons"][0]["text"]
    # two seed-dependent arms with one value each (paper-quick) are not judged; three seeds each are
    quick = verdicts(experiment("paper-quick.yaml"), arm_results({"unet-text": [0.7], "unet": [0.5]}))
    assert quick["C1"]["verdict"] == "one seed: not judged"
    full = verdicts(config, arm_results({"unet-text": [0.7, 0.71, 0.72], "unet": [0.5, 0.51, 0.52]}))
    assert full["C1"]["verdict"] == HOLDS
