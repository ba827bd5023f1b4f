"""What each unit is keyed by, and whether what an earlier run left on disk is a unit's finished result.

The engine (experiments/engine.py) claims a unit's folders with these inputs (experiments/units.py
`claim_folder`) and reuses a result made from them; `--status` and the submitit launcher ask
`earlier_result`, which decides the same way without touching the folders, for a unit that holds no
launcher record of these inputs (a result folder written before the launcher existed, or by a run
interrupted between writing the result and recording the unit done).
"""

from __future__ import annotations

from dataclasses import asdict
from functools import cached_property, lru_cache
from pathlib import Path

from cxr_ldm.data.file_identity import change_stamp, file_digest, file_stamp
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments import convergence
from cxr_ldm.experiments.plan import BASELINE, REFERENCES, Unit, plan_units
from cxr_ldm.experiments.real_references import reference_inputs, references_built
from cxr_ldm.experiments.spec import ArmSpec, ExperimentConfig
from cxr_ldm.experiments.units import (
    digest,
    folder_digest,
    folder_holds,
    read_result,
    recorded_matches,
)
from cxr_ldm.training.config_files import file_contents

RESULT = "result.json"


def checkpoint_file(path: str | None) -> dict:
    """`{"checkpoint_file": digest}` of a checkpoint given by path (a file replaced under the same path is
    another model), or nothing when none is given or it is missing (its unit reports that). A launcher asks
    for it at every poll: the bytes are read again only when the file changed (data/file_identity.py
    `change_stamp`)."""
    if path is None or not Path(path).is_file():
        return {}
    return {"checkpoint_file": _file_digest(str(Path(path).resolve()), change_stamp(path))}


@lru_cache(maxsize=256)
def _file_digest(path: str, stamp: tuple[int, ...] | None) -> str:
    return file_digest(path)


def config_contents(arm: ArmSpec) -> str:
    """A digest of what the arm's config files say (bases included): an edited file makes its units anew."""
    files = [*arm.configs, *(path for prep in arm.prepare for path in prep.configs)]
    return digest([file_contents(path) for path in files])


class UnitInputs:
    """The inputs of `config`'s units (the pretrained pipeline's digest computed once)."""

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config

    @cached_property
    def pretrained(self) -> str:
        return folder_digest(Path(self.config.pretrained))

    @property
    def references(self) -> dict:
        """The evaluator's folder: the data, its config, the evaluator (its checkpoint's bytes when given),
        the pretrained pipeline."""
        evaluator = checkpoint_file(self.config.evaluator.checkpoint)
        return {**reference_inputs(self.config), "pretrained": self.pretrained,
                **({"evaluator_file": evaluator["checkpoint_file"]} if evaluator else {})}  # fmt: skip

    @property
    def retriever(self) -> dict:
        config = self.config
        inputs = {**self.references, "retriever": asdict(config.retriever)}
        if config.retriever.config is not None:
            inputs["retriever_config"] = digest(file_contents(config.retriever.config))
        return {**inputs, **checkpoint_file(config.retriever.checkpoint)}

    @property
    def evaluation(self) -> dict:
        """What every evaluation (the baseline's, each arm's) is made from (the thread count comes with the
        references)."""
        config = self.config
        retriever = checkpoint_file(config.retriever.checkpoint)
        return {**self.references, "protocol": asdict(config.protocol), "retriever": asdict(config.retriever),
                **({"retriever_file": retriever["checkpoint_file"]} if retriever else {})}  # fmt: skip

    def arm_fit(self, arm: ArmSpec, seed: int) -> dict:
        """An (arm, seed) unit's folder: what its fits are made from. With `convergence`, the references too:
        the learning-curve probe is judged by the evaluator, so where a fit stops depends on it."""
        config = self.config
        inputs = {"arm": arm.for_seed(seed), "seed": seed, "steps": config.steps, "threads": config.threads,
                  "pretrained": self.pretrained, "data": asdict(config.data),
                  "config_files": config_contents(arm), **convergence.unit_inputs(config),
                  **checkpoint_file(arm.checkpoints.get(seed))}  # fmt: skip
        if config.convergence is not None:
            inputs["references"] = self.references
        return inputs

    @cached_property
    def _file_parts(self) -> tuple[dict, dict[str, dict]]:
        """What the config's files say, as far as they are cheap to read: every config file (the arms', the
        data's, the retriever's) by content, a checkpoint given by path by its size and modification time;
        the files every unit reads, and each arm's own."""
        config = self.config

        def read(path: str | None):
            try:
                return None if path is None else digest(file_contents(path))
            except ConfigError as error:  # a missing or broken file: the unit that reads it reports it
                return str(error)

        shared = {"data": read(config.data.config), "retriever": read(config.retriever.config),
                  "checkpoints": [path and file_stamp(path) for path in (config.evaluator.checkpoint,
                                                                         config.retriever.checkpoint)]}  # fmt: skip
        arms = {arm.name: {"configs": [read(path) for path in [*arm.configs, *(q for prep in arm.prepare for q in prep.configs)]],
                           "checkpoints": {seed: file_stamp(path) for seed, path in arm.checkpoints.items()}}
                for arm in config.arms}  # fmt: skip
        return shared, arms

    def unit_files(self, name: str) -> str:
        """A digest of the files the unit `name` reads (an arm unit: the shared ones and its arm's; the
        references and the baseline: the shared ones; the others: all). It goes into the unit's key
        (unit_records.py), so a launcher's record made before one of them changed is no record of its unit.
        The pretrained pipeline is left out (an experiment may build it after its units are keyed); the engine
        judges it by its bytes when it runs a unit."""
        shared, arms = self._file_parts
        unit = next((unit for unit in plan_units(self.config) if unit.name == name), None)
        if name in (REFERENCES, BASELINE):
            return digest({"shared": shared})
        if unit is not None and unit.arm is not None:  # its own seed's checkpoint alone (`ArmSpec.for_seed`)
            arm = arms[unit.arm]
            return digest(
                {
                    "shared": shared,
                    "arm": {"configs": arm["configs"], "checkpoint": arm["checkpoints"].get(unit.seed)},
                }
            )
        return digest({"shared": shared, "arms": arms})


def arm_record_today(recorded):
    """An (arm, seed) folder's recorded inputs in today's form. A record written before a unit was keyed by its
    own seed alone (`ArmSpec.for_seed`) holds the whole arm: its `seeds` list and every seed's checkpoint; the
    other seeds are left out, so the fit and the result it holds are reused (and the record rewritten)."""
    arm = recorded.get("arm") if isinstance(recorded, dict) else None
    if not isinstance(arm, dict) or "seeds" not in arm:
        return recorded
    spec = {key: value for key, value in arm.items() if key not in ("seeds", "checkpoints")}
    checkpoint = (arm.get("checkpoints") or {}).get(str(recorded.get("seed")))
    return {**recorded, "arm": {**spec, "checkpoint": checkpoint}}


def same_inputs(recorded, inputs: dict) -> bool:
    """A result's recorded inputs are `inputs` (compared as JSON, as they were written; units.py
    `recorded_matches`)."""
    return recorded_matches(recorded, inputs)


def reusable_arm_result(run_dir: Path, fit_inputs: dict, evaluation_inputs: dict) -> dict | None:
    """The (arm, seed) unit's result when its folder holds these fit inputs and the result was judged with
    these evaluation inputs (the engine reuses it), else None."""
    if not folder_holds(run_dir, fit_inputs, arm_record_today):
        return None
    result = read_result(run_dir / RESULT)
    if result is None or not same_inputs(result.get("evaluation_inputs"), evaluation_inputs):
        return None
    return result


def reusable_baseline(folder: Path, evaluation_inputs: dict) -> dict | None:
    """The pretrained baseline's result when its folder holds these evaluation inputs, else None."""
    return read_result(folder / RESULT) if folder_holds(folder, evaluation_inputs) else None


def result_kept(config: ExperimentConfig, unit: Unit):
    """For a unit that leaves a result of its own (the references, the baseline, an arm), a check that it is
    still on disk; None for the others."""
    out = Path(config.out)
    if unit.name == REFERENCES:
        return lambda: references_built(config, out)
    if unit.name == BASELINE:
        return (out / "baseline" / RESULT).is_file
    if unit.arm is not None:
        return (out / "arms" / unit.arm / f"seed{unit.seed}" / RESULT).is_file
    return None


def earlier_result(config: ExperimentConfig, name: str, inputs: UnitInputs | None = None) -> dict | None:
    """The result an earlier run left for the unit `name` that the engine would reuse as it is: the arm
    unit's `result.json`, the baseline's, or for `references` the evaluator and retriever (`{}`). None when
    there is none, it was made from other inputs, or the unit has no result of its own to judge by (the
    follow-ups, the report)."""
    inputs = inputs or UnitInputs(config)
    out = Path(config.out)
    if name == REFERENCES:
        built = (folder_holds(out / "evaluator", inputs.references) and folder_holds(out / "retriever", inputs.retriever)
                 and references_built(config, out))  # fmt: skip
        return {} if built else None
    if name == BASELINE:
        return reusable_baseline(out / "baseline", inputs.evaluation)
    unit = next((unit for unit in plan_units(config) if unit.name == name), None)
    if unit is None or unit.arm is None:
        return None
    arm = next(a for a in config.arms if a.name == unit.arm)
    run_dir = out / "arms" / arm.name / f"seed{unit.seed}"
    if not (run_dir / RESULT).is_file():
        return None  # nothing to reuse; an arm whose config files cannot be read fails in its own unit
    return reusable_arm_result(run_dir, inputs.arm_fit(arm, unit.seed), inputs.evaluation)


__all__ = [
    "RESULT",
    "UnitInputs",
    "arm_record_today",
    "checkpoint_file",
    "config_contents",
    "earlier_result",
    "reusable_arm_result",
    "result_kept",
    "reusable_baseline",
    "same_inputs",
]
