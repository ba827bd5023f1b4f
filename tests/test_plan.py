"""The plan of an experiment's units: what each needs first, and the waves a launcher runs them in. The
pretrained baseline is a unit of its own that needs the references alone, so the arms do not wait for it
and a launcher runs it beside them; the report needs it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from _launch import toy_launch_args

from cxr_ldm.commands.experiment import parse_experiment
from cxr_ldm.experiments.plan import BASELINE, REFERENCES, REPORT, plan_units, waves

ARMS = ["arms/unet-text/seed0", "arms/unet-text/seed1"]


def test_the_baseline_needs_the_references_alone_and_runs_beside_the_arms(tmp_path: Path) -> None:
    config, followups = parse_experiment(toy_launch_args(tmp_path, "out"))
    units = {unit.name: unit for unit in plan_units(config, followups)}
    assert list(units) == [REFERENCES, BASELINE, *ARMS, REPORT]
    assert units[BASELINE].needs == (REFERENCES,)
    assert all(units[name].needs == (REFERENCES,) for name in ARMS)  # no arm waits for the baseline
    assert set(units[REPORT].needs) == {REFERENCES, BASELINE, *ARMS}
    assert [[unit.name for unit in wave] for wave in waves(list(units.values()))] == [
        [REFERENCES],
        [BASELINE, *ARMS],
        [REPORT],
    ]


def test_a_protocol_without_a_baseline_plans_no_baseline_unit(tmp_path: Path) -> None:
    config, followups = parse_experiment(toy_launch_args(tmp_path, "out"))
    config = replace(config, protocol=replace(config.protocol, baseline=False))
    units = plan_units(config, followups)
    assert [unit.name for unit in units] == [REFERENCES, *ARMS, REPORT]
    assert BASELINE not in units[-1].needs
