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


def test_a_side_with_one_seed_is_not_judged_against_another_sides_spread() -> None:
    """One seed of an arm against three of another held on the three seeds' spread alone, and seeds without a
    value were dropped in silence: [0.80, nan, nan] against [0.70, 0.71, 0.72] held with no word of it."""
    lost = compare(greater(), [0.80, float("nan"), float("nan")], [0.70, 0.71, 0.72])
    assert lost.verdict == NOT_JUDGED
    assert "a: 1 of 3 seeds measured" in lost.note and "one seed of a" in lost.note
    assert compare(greater(), [0.9], [0.70, 0.71, 0.72]).verdict == NOT_JUDGED
    # a deterministic reference measured once beside three seeds is judged on the seeds' spread
    assert compare(greater(b="real_test"), [0.80, 0.81, 0.82], [0.70]).verdict == HOLDS
    kept = compare(greater(), [0.80, 0.82, float("nan")], [0.70, 0.71, 0.72])
    assert kept.verdict == HOLDS and kept.note == "a: 2 of 3 seeds measured"
    assert "2 of 3 seeds measured" in kept.describe()


def test_a_seed_without_a_metric_keeps_its_place_as_nan() -> None:
    """add_values skipped a seed whose results lacked the metric: the group seemed to have fewer seeds."""
    import math

    from cxr_ldm.experiments.claims import add_values

    values: dict = {}
    add_values(values, "arm", {"m": 0.5, "k": 1.0})
    add_values(values, "arm", {"k": 2.0})
    add_values(values, "arm", {"m": 0.7, "j": 3.0})
    assert values["arm"]["m"][0] == 0.5 and math.isnan(values["arm"]["m"][1]) and values["arm"]["m"][2] == 0.7
    assert values["arm"]["k"][:2] == [1.0, 2.0] and math.isnan(values["arm"]["k"][2])
    assert [math.isnan(v) for v in values["arm"]["j"]] == [True, True, False]
    judged = compare(Comparison(a="arm", b="b", metric="m"), values["arm"]["m"], [0.1, 0.2])
    assert judged.verdict == HOLDS and judged.note == "arm: 2 of 3 seeds measured"


def test_a_metric_better_lower_is_judged_the_right_way_round() -> None:
    """FID is better lower: a claim that arm a beats arm b on FID held when a's FID was the higher one."""
    fid = Comparison(a="a", b="b", metric="test_prompts/fid_xrv")
    worse, better = [5.0, 5.1, 5.2], [2.0, 2.1, 2.2]
    assert compare(fid, worse, better).verdict == FAILS
    held = compare(fid, better, worse)
    assert (
        held.verdict == HOLDS
        and "a 2.100 ± 0.100 < b 5.100 ± 0.100 on test_prompts/fid_xrv (lower is better)" in (held.describe())
    )
    # at least as good within a margin: 5.3 is within 0.5 above 5.1
    close = Comparison(a="a", b="b", metric="fid_xrv", relation="at_least", margin=0.5)
    assert compare(close, [5.3, 5.31, 5.32], worse).verdict == HOLDS
    assert "<= b 5.100 ± 0.100 + 0.5" in compare(close, [5.3, 5.31, 5.32], worse).describe()
    diversity = Comparison(a="a", b="b", metric="diversity/ms_ssim", better="lower")
    assert compare(diversity, [0.2, 0.21, 0.22], [0.5, 0.51, 0.52]).verdict == HOLDS


def test_a_claim_on_a_metric_without_a_better_side_must_say_which(tmp_path) -> None:
    from cxr_ldm.errors import ConfigError

    config = experiment("demo.yaml")
    arm = config.arms[0].name
    config.claims = [
        ClaimSpec(id="d", text="", comparisons=[Comparison(a=arm, b="baseline", metric="ms_ssim")])
    ]
    with pytest.raises(
        ConfigError, match="claims d: whether a higher or a lower ms_ssim is better is not known"
    ):
        config.validate()
    config.claims[0].comparisons[0].better = "lower"
    config.validate()
    config.claims = [
        ClaimSpec(
            id="f", text="", comparisons=[Comparison(a=arm, b="baseline", metric="fid_xrv", better="higher")]
        )
    ]
    with pytest.raises(ConfigError, match="claims f: a lower fid_xrv is better, not a higher one"):
        config.validate()


def test_a_groups_metrics_keep_the_order_the_results_give_them() -> None:
    """add_values went through a set of metric names: results.json's summary came out in another order in
    every process (string hashing is seeded per process)."""
    import subprocess
    import sys

    script = (
        "from cxr_ldm.experiments.claims import add_values\n"
        "v = {}\n"
        "add_values(v, 'g', {f'm{i}': float(i) for i in range(40)})\n"
        "add_values(v, 'g', {f'n{i}': float(i) for i in range(40)})\n"
        "print(list(v['g']))\n"
    )
    orders = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout  # fmt: skip
        for seed in (1, 2, 3)
    }
    assert orders == {str([*(f"m{i}" for i in range(40)), *(f"n{i}" for i in range(40))]) + "\n"}
