"""Follow-up experiments: what runs after the arms with the model of one arm (e.g. classifiers trained on its
synthetic images), and adds claim groups, a section of `results.json` and a section of `report.md`.

The engine knows a follow-up only through the `Followup` protocol below; a particular one is composed in
above the engine (`run_experiment(config, followups=(...))`, as `python -m cxr_ldm experiment` does), so
the engine, the spec, the protocol, the report and the claims import no particular experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxr_ldm.experiments.progress import StageLog
from cxr_ldm.experiments.spec import ExperimentConfig, GroupSource

# values[group][metric] = one value per seed: what claims are checked against.
Values = dict[str, dict[str, list[float]]]


@dataclass
class FollowupInputs:
    """What a follow-up runs with.

    Args:
        config: the experiment (validated, the follow-up's `validate` included).
        arms: arm name -> seed -> that unit's result (`checkpoint`, `metrics`, ...).
        log: the experiment's progress log (`log.line` for messages).
        data_overrides: the init_args the experiment gives every data module (root, cache_dir).
    """

    config: ExperimentConfig
    arms: dict[str, dict[int, dict]]
    log: StageLog
    data_overrides: dict


@dataclass
class FollowupResult:
    """What a follow-up produced.

    Args:
        results: kept under the follow-up's `key` in `results.json`.
        values: `values[group][metric]` = one value per seed, for claims naming the follow-up's groups.
        report: the markdown lines of its section of `report.md`.
    """

    results: dict
    values: Values = field(default_factory=dict)
    report: list[str] = field(default_factory=list)


class Followup(GroupSource, Protocol):
    """An experiment run after the arms.

    Attributes:
        key: its section of the experiment config and of `results.json` (e.g. `augmentation`).
        prefix: its claim groups are `<prefix>/...`; no arm may take this name.
        groups: its claim groups described for messages (e.g. `augment/<size>/<condition> of ...`).
        stage: its label in the progress log and in the wall times of `results.json`.
        settings: its config section; None when switched off (nothing runs, its claims are "not measured").
    """

    key: str
    stage: str
    settings: Any
    # prefix, groups, validate(config) and provides(group): from GroupSource (experiments/spec.py)

    def run(self, inputs: FollowupInputs) -> FollowupResult:
        """Run (resuming what an earlier run of the same inputs finished)."""


@dataclass
class FollowupRun:
    """A follow-up of one experiment run and what it produced (None: switched off)."""

    followup: Followup
    result: FollowupResult | None


def run_followups(
    config: ExperimentConfig, followups: Sequence[Followup], arms: dict, log: StageLog, data_overrides: dict
) -> list[FollowupRun]:
    """Every switched-on follow-up in order, each closing its own stage of the progress log."""
    runs = []
    for followup in followups:
        result = None
        if followup.settings is not None:
            result = followup.run(FollowupInputs(config, arms, log, data_overrides))
            log.stage(followup.stage)
        runs.append(FollowupRun(followup, result))
    return runs


__all__ = ["Followup", "FollowupInputs", "FollowupResult", "FollowupRun", "Values", "run_followups"]
