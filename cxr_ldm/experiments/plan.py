"""An experiment as named units of work and what each needs first: `references` (data, pretrained pipeline,
evaluator, retriever, ceilings), `baseline` (the pretrained pipeline judged by the protocol, when the
protocol asks for it) and one `arms/<arm>/seed<k>` per (arm, seed) (its prepare fits, its fit, its
evaluation) after the references, beside each other, one `followups/<key>` per switched-on follow-up (after
every arm unit), and `report` (claims, results.json, report.md) after everything. A launcher runs them in this order,
or as jobs that wait for what they need (experiments/engine.py `run_unit` runs one)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cxr_ldm.experiments.followup import Followup
from cxr_ldm.experiments.spec import ExperimentConfig

REFERENCES = "references"
BASELINE = "baseline"
REPORT = "report"


@dataclass(frozen=True)
class Unit:
    """One unit of work: its name, the units whose outputs it reads, and its arm and seed (arm units)."""

    name: str
    needs: tuple[str, ...] = ()
    arm: str | None = None
    seed: int | None = None

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}" if self.arm is not None else self.name


def arm_unit_name(arm: str, seed: int) -> str:
    return f"arms/{arm}/seed{seed}"


def plan_units(config: ExperimentConfig, followups: Sequence[Followup] = ()) -> list[Unit]:
    """Every unit of `config` in an order that runs each after what it needs."""
    units = [Unit(REFERENCES)]
    # the baseline needs the references alone: the arms do not wait for it
    baseline = [Unit(BASELINE, (REFERENCES,))] if config.protocol.baseline else []
    arms = [
        Unit(arm_unit_name(arm.name, seed), (REFERENCES,), arm.name, seed)
        for arm in config.arms
        for seed in config.arm_seeds(arm)
    ]
    units += baseline + arms
    after_arms = tuple(unit.name for unit in arms)
    ran = [Unit(f"followups/{f.key}", after_arms) for f in followups if f.settings is not None]
    units += ran
    judged = (*(unit.name for unit in baseline), *after_arms, *(unit.name for unit in ran))
    units.append(Unit(REPORT, (REFERENCES, *judged)))
    return units


def waves(units: Sequence[Unit]) -> list[list[Unit]]:
    """The units in waves: each wave needs only units of earlier waves (its units are independent)."""
    placed: dict[str, int] = {}
    result: list[list[Unit]] = []
    for unit in units:
        wave = max((placed[name] + 1 for name in unit.needs), default=0)
        placed[unit.name] = wave
        while len(result) <= wave:
            result.append([])
        result[wave].append(unit)
    return result


__all__ = ["BASELINE", "REFERENCES", "REPORT", "Unit", "arm_unit_name", "plan_units", "waves"]
