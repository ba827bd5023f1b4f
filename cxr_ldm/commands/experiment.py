"""`python -m cxr_ldm experiment --config configs/experiments/NAME.yaml`: fine-tuning strategies compared.

Runs what the config declares (data, pretrained pipeline, evaluator, arms x seeds, protocol, augmentation,
claims), resuming whatever an earlier run of the same inputs finished, and writes `report.md`,
`results.json`, figures and TensorBoard logs under `out`. Every key can be overridden on the command line
(`--out runs/x --seeds [1]`); `--print_config` shows the resolved experiment.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from cxr_ldm.experiments.followup import Followup
    from cxr_ldm.experiments.spec import ExperimentConfig

DESCRIPTION = "compare fine-tuning strategies over seeds: fits, evaluation, claims, report (resumable)"


class ParsedExperiment(NamedTuple):
    """An experiment of a command line: the engine's config and the follow-ups composed in (today the
    augmentation experiment, switched off by `--augmentation null`). `run_experiment(*parsed)` runs it."""

    config: ExperimentConfig
    followups: tuple[Followup, ...]


def build_parser():
    """A jsonargparse parser over `ExperimentConfig` and the follow-ups' sections (`augmentation:`, an
    `AugmentationSpec` or null): every key typed and validated before anything runs."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from cxr_ldm.experiments.spec import ExperimentConfig
    from cxr_ldm.experiments.synthetic_augmentation.followup import AugmentationSpec

    parser = ArgumentParser(prog="python -m cxr_ldm experiment", description=DESCRIPTION, default_env=False)
    parser.add_argument(
        "--config", action=ActionConfigFile, help="YAML experiment config (configs/experiments/)"
    )
    parser.add_class_arguments(ExperimentConfig, None, fail_untyped=True)
    parser.add_argument(
        "--augmentation",
        type=AugmentationSpec | None,
        default=None,
        help="the synthetic-data augmentation experiment with the model of one arm (null: switched off)",
    )
    return parser


def parse_experiment(argv: list[str]) -> ParsedExperiment:
    """The `ExperimentConfig` of a command line (config files and overrides) and its follow-ups."""
    from cxr_ldm.experiments.spec import ExperimentConfig
    from cxr_ldm.experiments.synthetic_augmentation.followup import AugmentationFollowup

    parser = build_parser()
    init = parser.instantiate_classes(parser.parse_args(argv))
    config = ExperimentConfig(**{f.name: init[f.name] for f in fields(ExperimentConfig)})
    return ParsedExperiment(config, (AugmentationFollowup(init["augmentation"]),))


def main(argv: list[str] | None = None) -> int:
    from cxr_ldm.experiments.engine import run_experiment

    config, followups = parse_experiment(sys.argv[1:] if argv is None else argv)
    outcome = run_experiment(config, followups)
    print(f"{len(outcome.computed)} units computed, {len(outcome.reused)} reused from earlier runs")
    for claim in outcome.results["claims"]:
        print(f"{claim['id']}: {claim['verdict']}")
    print(f"report: {outcome.report}")
    return 0
