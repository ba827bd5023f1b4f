"""Run an experiment as units (experiments/plan.py; `run_unit` runs one): references once, the pretrained baseline, every (arm, seed) fit and evaluation, the
follow-up experiments (experiments/followup.py), then the claims and the report. Each unit's result is written atomically under
`out`, keyed by its inputs, so a rerun computes only what is missing or was made from other inputs.

Layout of `out`:
    evaluator/, retriever/       the references (kept for reruns)
    baseline/                    the pretrained pipeline judged by the protocol
    arms/<arm>/seed<k>/          fit/ (checkpoints), prepare-<i>/, eval/ (images), result.json
    <follow-up>/                 each follow-up's own folder (augment/: the augmentation experiment)
    tensorboard/<arm>/seed<k>/   every fit's logs; hparams/ holds the HPARAMS view of every run
    report.md, results.json, figures/
    units/<unit>/                a launcher's record of the unit: its job, when it started, when it finished
    jobs/                        the submitit launcher's job files and logs
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Timer

from cxr_ldm.data.atomic import write_text_atomic
from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.learning_curve import read_learning_curve
from cxr_ldm.evaluation.protocol import Prompting, judge, prompting
from cxr_ldm.evaluation.references import References
from cxr_ldm.experiments import convergence
from cxr_ldm.experiments.cluster_fit import cluster_fit_overrides, is_first_task, leave_fit_group
from cxr_ldm.experiments.followup import Followup, run_followups
from cxr_ldm.experiments.plan import BASELINE, REFERENCES, REPORT, Unit, arm_unit_name, plan_units
from cxr_ldm.experiments.progress import StageLog
from cxr_ldm.experiments.real_references import build_references, data_overrides
from cxr_ldm.experiments.spec import ArmSpec, ExperimentConfig
from cxr_ldm.experiments.unit_inputs import (
    RESULT,
    UnitInputs,
    arm_record_today,
    reusable_arm_result,
    reusable_baseline,
)
from cxr_ldm.experiments.unit_records import (
    DONE,
    clear_run,
    live_job,
    record_own_job,
    unit_folder,
    unit_key,
    write_record,
)
from cxr_ldm.experiments.unit_start import start_unit
from cxr_ldm.experiments.units import claim_folder, read_result, write_result
from cxr_ldm.training.fit import fit


@dataclass
class ExperimentOutcome:
    """What a run produced: the results document (also `out/results.json`) and which units it computed."""

    results: dict
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    report: Path | None = None


def ensure_data(config: ExperimentConfig, log: StageLog) -> None:
    root = Path(config.data.root)
    spec = config.data.phantom
    if spec is None:
        if not root.exists():
            raise ConfigError(
                f"data.root {root} does not exist; point it at the MIMIC-CXR-JPG tree (or set data.phantom)"
            )
        return
    from cxr_ldm.experiments.phantom_data import ensure_phantom

    ensure_phantom(root, spec.studies, spec.size, spec.seed, log.line)


def ensure_pretrained(config: ExperimentConfig, log: StageLog) -> None:
    path = Path(config.pretrained)
    record = path / "pretrain.json"  # a tiny pipeline built here records the size it was pretrained at
    if record.is_file():
        size = json.loads(record.read_text()).get("image_size")
        if size is not None and size != config.data.image_size:
            raise ConfigError(
                f"pretrained {path} was pretrained at {size} px ({record}) but data.image_size is "
                f"{config.data.image_size}: point pretrained at a pipeline of that size, or build one with "
                f"`python -m cxr_ldm.experiments.tiny_pretrained --image-size {config.data.image_size} --out DIR`"
            )
    if (path / "model_index.json").is_file() or not config.build_pretrained:
        return
    from cxr_ldm.training.tiny_pretrained import build_tiny_pretrained

    size = config.data.image_size  # the pipeline is pretrained at the size the experiment reads its images at
    log.line(f"building the tiny pretrained pipeline at {path}, {size} px (make tiny-pretrained)")
    build_tiny_pretrained(path, Path(config.out) / "tiny-pretrain", image_size=size)


def _substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, text in names.items():
            value = value.replace(key, text)
        return value
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    return value


def _training_seconds(done: Path) -> float | None:
    """The training time a finished stage recorded in its `done` marker (None: a marker of an older run, empty)."""
    text = done.read_text().strip()
    return json.loads(text).get("training_seconds") if text else None


def fit_arm(
    config: ExperimentConfig, arm: ArmSpec, seed: int, run_dir: Path, references: References, asked: Prompting
) -> tuple[Path, float | None]:
    """The arm's prepare fits and its own fit for `seed` (each resumed from its last checkpoint, skipped when
    done), its learning curve probed with the probes `asked`. Returns the fit's last checkpoint and the
    training time of all its stages: Lightning's `Timer`, whose time is kept in the checkpoints, so a fit
    resumed after a crash counts the time of every process up to its last checkpoint (None when a stage was
    finished by an older run that did not record it)."""
    if seed in arm.checkpoints:
        checkpoint = Path(arm.checkpoints[seed])
        if not checkpoint.is_file():
            raise ConfigError(f"arms {arm.name}: checkpoints[{seed}] {checkpoint} does not exist")
        return checkpoint, None
    out = Path(config.out)
    names = {"{run}": str(run_dir), "{pretrained}": config.pretrained}
    shared = {
        "seed_everything": seed,
        **{f"data.init_args.{k}": v for k, v in data_overrides(config, out).items()},
        "trainer.logger.init_args.save_dir": str(out / "tensorboard"),
        "trainer.logger.init_args.version": f"seed{seed}",
        **cluster_fit_overrides(),
    }
    stages = [
        (
            run_dir / f"prepare-{i}",
            prep.configs,
            prep.overrides,
            {"trainer.logger.init_args.name": f"{arm.name}-prepare{i}"},
        )
        for i, prep in enumerate(arm.prepare)
    ]
    main = {
        "trainer.logger.init_args.name": arm.name,
        "model.init_args.components.pretrained_model_name_or_path": config.pretrained,
    }
    if config.steps is not None:
        main["trainer.max_steps"] = config.steps
    main.update(convergence.fit_overrides(config))
    callbacks = convergence.fit_callbacks(config, run_dir, references, asked)
    stages.append((run_dir / "fit", arm.configs, arm.overrides, main))
    seconds: float | None = 0.0
    for folder, configs, overrides, own in stages:
        done = folder / "done"
        if not done.is_file():
            timer = Timer(verbose=False)
            fit(
                configs,
                {**shared, **own, "trainer.default_root_dir": str(folder), **_substitute(overrides, names)},
                ckpt_path="auto",
                callbacks=[timer, *(callbacks if folder.name == "fit" else ())],
            )
            write_text_atomic(done, json.dumps({"training_seconds": round(timer.time_elapsed("train"), 1)}))
        stage = _training_seconds(done)
        seconds = None if seconds is None or stage is None else seconds + stage
    checkpoint = run_dir / "fit" / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        raise ConfigError(
            f"arm {arm.name}: the fit wrote no {checkpoint}; keep a RunCheckpoint with save_last: true"
        )
    return checkpoint, seconds


def arm_datamodule(config: ExperimentConfig, arm: ArmSpec, run_dir: Path | None = None):
    """The arm's data module as its fit builds it: its configs, its `data.init_args.*` overrides with `{run}`
    (the unit's folder, when given) and `{pretrained}` filled in as the fit fills them, the experiment's data."""
    from cxr_ldm.training.datamodule import load_datamodule

    names = {"{pretrained}": config.pretrained, **({"{run}": str(run_dir)} if run_dir is not None else {})}
    overrides = {
        key.removeprefix("data.init_args."): value
        for key, value in _substitute(arm.overrides, names).items()
        if key.startswith("data.init_args.")
    }
    return load_datamodule(
        arm.configs,
        **{**overrides, **data_overrides(config, Path(config.out))},
        image_cache=False,
        num_workers=0,
    )


def arm_prompting(
    config: ExperimentConfig, arm: ArmSpec, references: References, run_dir: Path | None = None
):
    """The arm's probes and test prompts, written as the arm's own data module writes prompts (labels,
    a sentence template, tokens of textual inversion, or the report's text)."""
    datamodule = arm_datamodule(config, arm, run_dir)
    return prompting(config.protocol, references, datamodule, arm.probe_prompts)


@dataclass
class UnitOutcome:
    """What one unit did: the labels it computed and reused; the report unit also gives the results."""

    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    results: dict | None = None
    report: Path | None = None


def _references(config: ExperimentConfig, log: StageLog, build: bool = False) -> tuple[References, dict]:
    """The references (built by the `references` unit, read back by the others) and the inputs of every
    evaluation."""
    out = Path(config.out)
    if build:
        # the pipeline first: one of the wrong size is refused before any data is made
        ensure_pretrained(config, log)
        ensure_data(config, log)
        log.stage("data and pretrained pipeline")
    inputs = UnitInputs(config)
    claim_folder(out / "evaluator", inputs.references, log.line)
    claim_folder(out / "retriever", inputs.retriever, log.line)
    references = build_references(config, out)
    if build:
        log.stage("references: evaluator, retriever, ceilings")
    return references, inputs.evaluation


def _references_unit(config: ExperimentConfig, log: StageLog) -> None:
    _references(config, log, build=True)


def _baseline_unit(config: ExperimentConfig, log: StageLog, outcome: UnitOutcome) -> None:
    references, eval_inputs = _references(config, log)
    folder = Path(config.out) / "baseline"
    claim_folder(folder, eval_inputs, log.line)
    if reusable_baseline(folder, eval_inputs) is not None:
        log.skip("baseline (the pretrained pipeline)")
        outcome.reused.append("baseline")
        return
    asked = prompting(config.protocol, references)
    baseline = judge(config.pretrained, folder / "eval", config.protocol, references, asked)
    write_result(folder / RESULT, {"metrics": baseline})
    log.stage("baseline (the pretrained pipeline)", unit=True)
    outcome.computed.append("baseline")


def _arm_unit(config: ExperimentConfig, unit: Unit, log: StageLog, outcome: UnitOutcome) -> None:
    arm = next(a for a in config.arms if a.name == unit.arm)
    seed = unit.seed
    references, eval_inputs = _references(config, log)
    run_dir = Path(config.out) / "arms" / arm.name / f"seed{seed}"
    fit_inputs = UnitInputs(config).arm_fit(arm, seed)
    claim_folder(run_dir, fit_inputs, log.line, arm_record_today)
    if (earlier := reusable_arm_result(run_dir, fit_inputs, eval_inputs)) is not None:
        current = json.loads(json.dumps(eval_inputs))
        if earlier.get("evaluation_inputs") != current:  # an earlier version's record, brought up to date
            write_result(run_dir / RESULT, {**earlier, "evaluation_inputs": current})
        log.skip(unit.label)
        outcome.reused.append(unit.label)
        return
    # before the fit: a wrong probe set-up fails early
    asked = arm_prompting(config, arm, references, run_dir)
    log.stage(f"{unit.label}: references")
    checkpoint, trained = fit_arm(config, arm, seed, run_dir, references, asked)
    fitted = log.stage(f"{unit.label}: fit")
    leave_fit_group()
    if not is_first_task():
        return  # a fit on several tasks (DDP in one job): task 0 evaluates
    metrics = judge(checkpoint, run_dir / "eval", config.protocol, references, asked)
    gc.collect()
    evaluated = log.stage(f"{unit.label}: evaluation", unit=True, unit_before=fitted)
    result = {"arm": arm.name, "seed": seed, "checkpoint": str(checkpoint), "metrics": metrics,
              "seconds": {"fit": round(fitted if trained is None else trained, 1), "evaluation": round(evaluated, 1)},
              "evaluation_inputs": eval_inputs, "learning_curve": read_learning_curve(run_dir / "fit")}  # fmt: skip
    write_result(run_dir / RESULT, result)
    outcome.computed.append(unit.label)


def arm_results(config: ExperimentConfig) -> dict[str, dict[int, dict]]:
    """Every finished (arm, seed) unit's result, read from its folder."""
    found: dict[str, dict[int, dict]] = {}
    for arm in config.arms:
        for seed in config.arm_seeds(arm):
            path = Path(config.out) / "arms" / arm.name / f"seed{seed}" / RESULT
            result = read_result(path)
            if result is None:
                raise ConfigError(f"{path} is missing: unit {arm_unit_name(arm.name, seed)} has not finished")
            found.setdefault(arm.name, {})[seed] = result
    return found


def _report_unit(
    config: ExperimentConfig, followups: Sequence[Followup], log: StageLog, outcome: UnitOutcome
) -> None:
    from cxr_ldm.experiments.report import assemble_results, write_report

    references, _ = _references(config, log)
    baseline = None
    if config.protocol.baseline:
        path = Path(config.out) / "baseline" / RESULT
        if (found := read_result(path)) is None:
            raise ConfigError(f"{path} is missing: unit {BASELINE} has not finished; run it again")
        baseline = found["metrics"]
    arms = arm_results(config)
    ran = run_followups(config, followups, arms, log, data_overrides(config, Path(config.out)))
    outcome.results = assemble_results(config, references.ceilings, baseline, arms, ran, log.times)
    sections = [run.result.report for run in ran if run.result is not None]
    outcome.report = write_report(Path(config.out), config, outcome.results, sections)
    log.stage("claims and report")


def run_unit(
    config: ExperimentConfig, followups: Sequence[Followup], name: str, log: StageLog | None = None
) -> UnitOutcome:
    """Run the unit `name` of `config` (experiments/plan.py), resuming whatever an earlier run of the same
    inputs finished. It starts from its own thread count and seeds, whatever ran before it in the process."""
    config = config.validate(followups).resolved()
    units = {unit.name: unit for unit in plan_units(config, followups)}
    if name not in units:
        raise ConfigError(f"unit {name!r} is not a unit of {config.name}; its units: {sorted(units)}")
    unit = units[name]
    start_unit(config.threads, unit.seed or 0)
    Path(config.out).mkdir(parents=True, exist_ok=True)
    log = log or StageLog(f"{config.name}: {name}")
    outcome = UnitOutcome()
    if name == REFERENCES:
        _references_unit(config, log)
    elif name == BASELINE:
        _baseline_unit(config, log, outcome)
    elif unit.arm is not None:
        _arm_unit(config, unit, log, outcome)
    elif name == REPORT:
        _report_unit(config, followups, log, outcome)
    else:
        followup = next(f for f in followups if f"followups/{f.key}" == name)
        run_followups(config, [followup], arm_results(config), log, data_overrides(config, Path(config.out)))
    return outcome


def refuse_live_jobs(config: ExperimentConfig, units: Sequence[Unit]) -> None:
    """Refuse to run here a unit that a live job (a cluster's, or another process's) is running: both would
    write its folder, and this run's record would hide the job from `--status`."""
    busy = [(unit, job) for unit in units if (job := live_job(unit_folder(config, unit.name))) is not None]
    if busy:
        jobs = "; ".join(
            f"{unit.label}: job {job['job_id']} ({job['cluster']}, {job['state']})" for unit, job in busy
        )
        cancel = (
            " or cancel them (scancel JOBID)" if any(job["cluster"] == "slurm" for _, job in busy) else ""
        )
        raise ConfigError(
            f"live jobs run units of {config.out}: {jobs}; wait for them (`python -m cxr_ldm experiment ... "
            f"--status`){cancel}, then run again (jobs known to have ended, in a folder copied from a cluster "
            "whose squeue is not here: delete their units/<unit>/job.json)"
        )


def run_experiment(config: ExperimentConfig, followups: Sequence[Followup] = ()) -> ExperimentOutcome:
    """Everything `config` declares, then `followups` (experiments run after the arms with the model of one
    arm), resuming whatever an earlier run of the same inputs finished: the in-process launcher, every unit
    of the plan one after another in this process."""
    config = config.validate(followups).resolved()
    units = plan_units(config, followups)
    log = StageLog(
        config.name, units=sum(unit.arm is not None for unit in units) + int(config.protocol.baseline)
    )
    outcome = ExperimentOutcome(results={})
    inputs = UnitInputs(config)
    refuse_live_jobs(config, units)
    for unit in units:
        folder = unit_folder(config, unit.name)
        key = unit_key(config, followups, unit.name, inputs.unit_files(unit.name))
        refuse_live_jobs(config, [unit])  # a job started since the first look
        clear_run(folder)
        # this process is the unit's job: `--status` from another shell sees it running (or failed if it died)
        started = record_own_job(folder, key)
        done = run_unit(config, followups, unit.name, log)
        write_record(folder, DONE, {"key": key, "time": time.time(), "seconds": time.time() - started})
        outcome.computed += done.computed
        outcome.reused += done.reused
        if done.results is not None:
            outcome.results, outcome.report = done.results, done.report
    return outcome


__all__ = ["ExperimentOutcome", "UnitOutcome", "arm_results", "run_experiment", "run_unit"]
