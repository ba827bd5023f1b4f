"""`python -m cxr_ldm experiment --config configs/experiments/NAME.yaml`: fine-tuning strategies compared.

Runs what the config declares (data, pretrained pipeline, evaluator, arms x seeds, protocol, augmentation,
claims), resuming whatever an earlier run of the same inputs finished, and writes `report.md`,
`results.json`, figures and TensorBoard logs under `out`. Every key can be overridden on the command line
(`--out runs/x --seeds [1]`); `--print_config` shows the resolved experiment.

Where the units run: the `launcher:` section (experiments/launcher_spec.py; a cluster profile such as
configs/clusters/example-slurm.yaml composed in with a second `--config`): in this process by default, or one
submitit job per unit. `--status` prints every unit's state, job and log, and builds the report once every
unit is done (docs/cluster.md).
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from cxr_ldm.experiments.followup import Followup
    from cxr_ldm.experiments.launcher_spec import LauncherSpec
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

    from cxr_ldm.experiments.launcher_spec import LauncherSpec
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
    parser.add_argument(
        "--launcher",
        type=LauncherSpec,
        default=LauncherSpec(),
        help="where the units run: in_process (default) or submitit (local or slurm); see docs/cluster.md",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print every unit's state, job, elapsed time and log; build the report when all are done",
    )
    return parser


class ExperimentCommand(NamedTuple):
    """A whole command line: the experiment, its launcher, and whether only its status was asked."""

    experiment: ParsedExperiment
    launcher: LauncherSpec
    status: bool


def parse_command(argv: list[str]) -> ExperimentCommand:
    """The experiment of a command line (config files and overrides), its launcher and `--status`."""
    from cxr_ldm.experiments.spec import ExperimentConfig
    from cxr_ldm.experiments.synthetic_augmentation.followup import AugmentationFollowup

    parser = build_parser()
    init = parser.instantiate_classes(parser.parse_args(argv))
    launcher = init["launcher"].validate()
    config = ExperimentConfig(**{f.name: init[f.name] for f in fields(ExperimentConfig)})
    # threads: auto becomes the cores of a unit under this launcher before any unit is keyed
    experiment = ParsedExperiment(config.resolved(launcher), (AugmentationFollowup(init["augmentation"]),))
    return ExperimentCommand(experiment, launcher, bool(init["status"]))


def parse_experiment(argv: list[str]) -> ParsedExperiment:
    """The `ExperimentConfig` of a command line (config files and overrides) and its follow-ups."""
    return parse_command(argv).experiment


def launch(command: ExperimentCommand, stream=None):
    """Status or run through the submitit launcher: the driver's outcome (experiments/submitit_launcher.py).
    The engine (and with it torch) is loaded only to build the report: a status is read from the records."""
    from cxr_ldm.experiments.submitit_launcher import LaunchOutcome, SubmititLauncher

    launcher = SubmititLauncher(*command.experiment, command.launcher, stream)
    if not command.status:
        return launcher.launch()
    states = launcher.states()
    outcome = LaunchOutcome(states=states)
    if all(state.state == "done" for state in states[:-1]) and states[-1].state != "done":
        from cxr_ldm.experiments.engine import run_unit

        outcome.report = launcher.build_report(launcher.units[-1], run_unit)
        outcome.states = launcher.states()
    return outcome


def main(argv: list[str] | None = None) -> int:
    # parsed first: `--help`, `--print_config` and a config's mistakes answer before the engine's libraries load
    command = parse_command(sys.argv[1:] if argv is None else argv)
    if command.status or command.launcher.kind == "submitit":
        from cxr_ldm.experiments.status_table import status_table

        launched = launch(command)
        print(status_table(launched.states))
        for state in launched.failed:
            print(f"failed: {state.name} (job {state.job_id}); its log: {state.log}")
        if launched.report is not None:
            results = json.loads((launched.report.parent / "results.json").read_text())
            for claim in results["claims"]:
                print(f"{claim['id']}: {claim['verdict']}")
            print(f"report: {launched.report}")
        return 1 if launched.failed else 0
    from cxr_ldm.experiments.engine import run_experiment

    config, followups = command.experiment
    outcome = run_experiment(config, followups)
    print(f"{len(outcome.computed)} units computed, {len(outcome.reused)} reused from earlier runs")
    for claim in outcome.results["claims"]:
        print(f"{claim['id']}: {claim['verdict']}")
    print(f"report: {outcome.report}")
    return 0
