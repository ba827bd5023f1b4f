"""Follow-up experiments (cxr_ldm/experiments/followup.py): the claim groups they provide validate, unknown
ones are refused naming the claim and the group, and the results document holds each follow-up's section
and values. Nothing here trains a model."""

from __future__ import annotations

import json
import math

import pytest
from _tiny_run import ROOT

from cxr_ldm.commands.experiment import parse_experiment
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.followup import FollowupResult, FollowupRun
from cxr_ldm.experiments.report import assemble_results
from cxr_ldm.experiments.spec import ArmSpec, ClaimSpec, Comparison, ExperimentConfig
from cxr_ldm.experiments.synthetic_augmentation.followup import AugmentationFollowup, AugmentationSpec

DEMO = str(ROOT / "configs" / "experiments" / "demo.yaml")


def claim_on(group: str) -> str:
    return json.dumps(
        [{"id": "C4", "text": "t", "comparisons": [{"a": group, "b": "augment/50/real", "metric": "auroc"}]}]
    )


def test_the_augmentation_groups_validate_and_an_unknown_one_is_refused_naming_the_key() -> None:
    config, followups = parse_experiment(["--config", DEMO])
    assert config.validate(followups) is config  # the demo's claim C4 names augment/50/real+synthetic_1x
    (augmentation,) = followups
    assert augmentation.provides("augment/100/synthetic_2x")
    assert not augmentation.provides("augment/70/real") and not augmentation.provides("augment/x/real")
    for group in ("augment/70/real", "augment/50/synthetic_9x", "augmentation/50/real"):
        config, followups = parse_experiment(["--config", DEMO, "--claims", claim_on(group)])
        with pytest.raises(
            ConfigError, match=f"claims C4: '{group}' is neither an arm .* or augment/<size>/"
        ):
            config.validate(followups)


def test_without_the_followup_its_groups_are_unknown_and_switched_off_they_are_not_measured() -> None:
    config, followups = parse_experiment(["--config", DEMO])
    with pytest.raises(ConfigError, match="claims C4: 'augment/50/real.*nor baseline, real_test or vae_rec"):
        config.validate()  # the engine alone knows no augmentation experiment
    config, followups = parse_experiment(["--config", DEMO, "--augmentation", "null"])
    assert followups[0].settings is None
    config.validate(followups)  # switched off: its claims are "not measured", never refused
    with pytest.raises(ConfigError, match="augmentation.arm 'nope' is not an arm"):
        AugmentationFollowup(AugmentationSpec(arm="nope")).validate(config)
    with pytest.raises(ConfigError, match="augmentation.seed 7 is not a seed"):
        AugmentationFollowup(AugmentationSpec(arm="unet-text", seed=7)).validate(config)
    config.arms.append(ArmSpec(name="augment", configs=["x.yaml"]))
    with pytest.raises(ConfigError, match="reserved group name .*augment"):
        config.validate(followups)


class Constant:
    """A follow-up of fixed numbers: what the engine sees of any follow-up."""

    key, prefix, groups, stage = "constant", "const", "const/<k> of the constant follow-up", "constant"

    def __init__(self, settings) -> None:
        self.settings = settings

    def validate(self, config: ExperimentConfig) -> None:
        if self.settings["k"] < 0:
            raise ConfigError("constant.k must be at least 0")

    def provides(self, group: str) -> bool:
        return group == f"const/{self.settings['k']}"

    def run(self, inputs) -> FollowupResult:
        return FollowupResult(
            {"k": self.settings["k"]}, {f"const/{self.settings['k']}": {"auroc": [0.9, 0.92]}}
        )


def test_a_followup_adds_its_section_values_and_settings_to_the_results() -> None:
    followup = Constant({"k": 3})
    claim = ClaimSpec("up", "t", [Comparison(a="const/3", b="real_test", metric="auroc")])
    config = ExperimentConfig(arms=[ArmSpec(name="a", configs=["x.yaml"])], claims=[claim])
    config.validate([followup])
    with pytest.raises(ConfigError, match="'const/4' is neither .* or const/<k> of the constant follow-up"):
        ExperimentConfig(
            arms=config.arms, claims=[ClaimSpec("up", "t", [Comparison("const/4", "a", "m")])]
        ).validate([followup])
    ceilings = {"real_test": {"auroc": 0.5}, "vae_reconstructions": {"auroc": 0.5}, "validate_vs_test": {}}
    ran = [FollowupRun(followup, followup.run(None))]
    results = assemble_results(config, ceilings, None, {}, ran, {})
    assert results["constant"] == {"k": 3}
    assert list(results["config"])[-2:] == ["constant", "claims"] and results["config"]["constant"] == {
        "k": 3
    }
    assert results["summary"]["const/3"]["auroc"]["n"] == 2
    assert math.isclose(results["summary"]["const/3"]["auroc"]["mean"], 0.91)
    assert results["claims"][0]["verdict"] == "holds"
    off = assemble_results(config, ceilings, None, {}, [FollowupRun(Constant(None), None)], {})
    assert off["constant"] is None and off["config"]["constant"] is None
