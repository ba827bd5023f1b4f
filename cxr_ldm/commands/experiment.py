"""`python -m cxr_ldm experiment --config configs/experiments/NAME.yaml`: fine-tuning strategies compared.

Runs what the config declares (data, pretrained pipeline, evaluator, arms x seeds, protocol, augmentation,
claims), resuming whatever an earlier run of the same inputs finished, and writes `report.md`,
`results.json`, figures and TensorBoard logs under `out`. Every key can be overridden on the command line
(`--out runs/x --seeds [1]`); `--print_config` shows the resolved experiment.
"""

from __future__ import annotations

import sys
from dataclasses import fields

DESCRIPTION = "compare fine-tuning strategies over seeds: fits, evaluation, claims, report (resumable)"


def build_parser():
    """A jsonargparse parser over `ExperimentConfig`: every key typed and validated before anything runs."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from cxr_ldm.experiments.spec import ExperimentConfig

    parser = ArgumentParser(prog="python -m cxr_ldm experiment", description=DESCRIPTION, default_env=False)
    parser.add_argument(
        "--config", action=ActionConfigFile, help="YAML experiment config (configs/experiments/)"
    )
    parser.add_class_arguments(ExperimentConfig, None, fail_untyped=True)
    return parser


def parse_config(argv: list[str]):
    """The `ExperimentConfig` of a command line (config files and overrides)."""
    from cxr_ldm.experiments.spec import ExperimentConfig

    parser = build_parser()
    init = parser.instantiate_classes(parser.parse_args(argv))
    return ExperimentConfig(**{f.name: init[f.name] for f in fields(ExperimentConfig)})


def main(argv: list[str] | None = None) -> int:
    from cxr_ldm.experiments.engine import run_experiment

    config = parse_config(sys.argv[1:] if argv is None else argv)
    outcome = run_experiment(config)
    print(f"{len(outcome.computed)} units computed, {len(outcome.reused)} reused from earlier runs")
    for claim in outcome.results["claims"]:
        print(f"{claim['id']}: {claim['verdict']}")
    print(f"report: {outcome.report}")
    return 0
