"""Converged or not: each arm's fit stops on the plateau of its learning curve (Lightning's `EarlyStopping` on
the probe of evaluation/learning_curve.py), and each (arm, seed) is declared "converged at step N" or
"still rising at the cap"; claims comparing an arm still rising are undecided (experiments/claims.py).

The rule, fixed in the experiment's `convergence` section before any result is read (spec.ConvergenceSpec):
replay EarlyStopping on the recorded probes (an improvement is a value above the best so far by more than
`min_delta`; `wait` counts the probes since the last one); no fit stops before `min_steps` (Lightning's
`Trainer(min_steps)`). A fit that EarlyStopping stopped is converged at the step it stopped, unless the stop was a patience signal
held until `min_steps` and the probes after it rose again (its last `patience` probes hold an improvement):
that fit is still rising. A fit that reached its cap is converged when its last `patience` probes brought no
improvement (wait >= patience: it would have stopped there), at the step where wait reached patience;
otherwise it is still rising at the cap. With `ceiling_margin` set, a fit also stops at the first probe within
that margin of the evaluator's balanced accuracy on the real test images (EarlyStopping's `stopping_threshold`):
"converged at step N (at the real images' level)".
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_ldm.evaluation.metrics.metric_names import BALANCED_ACCURACY
from cxr_ldm.experiments.spec import ConvergenceSpec, ExperimentConfig

if TYPE_CHECKING:
    from cxr_ldm.evaluation.learning_curve import ProbeEarlyStopping

# The probe and its stopping rule (evaluation/learning_curve.py) are imported where a fit needs them: a unit's
# inputs (`unit_inputs`, `experiment --status`) need neither them nor their libraries.

PROBE_SET = "probe_set.pt"
CONVERGED, RISING, UNFINISHED, NOT_RECORDED = (
    "converged",
    "still rising at the cap",
    "unfinished",
    "no learning curve recorded",
)


def probe_settings(config: ExperimentConfig) -> dict:
    """The probe's settings, the protocol's sampler filling what `convergence` leaves open."""
    spec, protocol = config.convergence, config.protocol
    return {
        "every_n_steps": spec.every_n_steps, "images_per_finding": spec.images_per_finding,
        "sample_steps": spec.sample_steps, "guidance": protocol.guidance if spec.guidance is None else spec.guidance,
        "scheduler": spec.scheduler or protocol.scheduler, "seed": spec.seed, "batch_size": protocol.batch_size,
    }  # fmt: skip


def unit_inputs(config: ExperimentConfig) -> dict:
    """What a fit's unit is keyed by besides its arm and seed: the stopping rule and the probe (nothing
    without `convergence`, and no `ceiling_margin` key while it is unset, so that the units of earlier runs
    stay theirs)."""
    if config.convergence is None:
        return {}
    rule = asdict(config.convergence)
    if rule["ceiling_margin"] is None:
        del rule["ceiling_margin"]
    return {"convergence": {**rule, "probe": probe_settings(config)}}


def fit_overrides(config: ExperimentConfig) -> dict:
    """The fit keys the learning curve needs: validation (its loss and samples) at every probe, and no stop
    before `min_steps`."""
    if config.convergence is None:
        return {}
    return {
        "trainer.val_check_interval": config.convergence.every_n_steps,
        "trainer.check_val_every_n_epoch": None,
        "trainer.min_steps": config.convergence.min_steps or None,
        "trainer.min_epochs": 0,  # min_steps alone (with min_steps, Lightning's default is one whole epoch too)
    }


def fit_callbacks(config: ExperimentConfig, run_dir: Path, references, asked) -> list:
    """The probe and Lightning's EarlyStopping on it, for the arm's own fit (none without `convergence`),
    with the probe set they read written to `run_dir` (the arm's probe prompts, the evaluator and its cuts)."""
    spec = config.convergence
    if spec is None:
        return []
    from cxr_ldm.evaluation.learning_curve import LearningCurveProbe
    from cxr_ldm.evaluation.probe_set import write_probe_set

    settings = probe_settings(config)
    threshold = stopping_threshold(spec, references.ceilings)
    stop = early_stopping(spec, threshold)
    write_probe_set(run_dir / PROBE_SET, references.evaluator, references.cuts, asked.probes)
    return [LearningCurveProbe(str(run_dir / PROBE_SET), **settings), stop]


def stopping_threshold(spec: ConvergenceSpec, ceilings: dict) -> float | None:
    """The probe value at which a fit stops (`ceiling_margin` below the evaluator's macro balanced accuracy
    on the real test images), or None (no `ceiling_margin`)."""
    if spec.ceiling_margin is None:
        return None
    return round(float(ceilings["real_test"][BALANCED_ACCURACY]) - spec.ceiling_margin, 4)


def early_stopping(spec: ConvergenceSpec, threshold: float | None = None) -> ProbeEarlyStopping:
    """Lightning's EarlyStopping on the probe, checked right after each probe (evaluation/learning_curve.py),
    stopping also at `threshold` when given (`stopping_threshold`)."""
    from cxr_ldm.evaluation.learning_curve import ProbeEarlyStopping

    return ProbeEarlyStopping(
        spec.every_n_steps, patience=spec.patience, min_delta=spec.min_delta, stopping_threshold=threshold,
        strict=False, verbose=False,
    )  # fmt: skip


def status(curve: dict | None, spec: ConvergenceSpec) -> dict:
    """`{"status": CONVERGED | RISING | UNFINISHED | NOT_RECORDED, "step": N or None, "best": value,
    "best_step": step, "text": ...}` for one fit's learning curve (the module docstring's rule)."""
    from cxr_ldm.evaluation.learning_curve import AT_THRESHOLD

    records = (curve or {}).get("records") or []
    if not records:
        return {"status": NOT_RECORDED, "step": None, "best": None, "best_step": None, "text": NOT_RECORDED}
    best, best_step, wait, reached = float("-inf"), None, 0, None
    for record in records:
        if record["value"] > best + spec.min_delta:
            best, best_step, wait, reached = record["value"], record["step"], 0, None
        else:
            wait += 1
            if wait == spec.patience:
                reached = record["step"]
    found = {"best": best, "best_step": best_step}
    at_ceiling = bool(curve.get("finished")) and curve.get("stopping_reason") == AT_THRESHOLD
    if curve.get("stopped_early") and not at_ceiling and wait < spec.patience:
        # a patience signal before `min_steps` is held until then (Lightning's `min_steps`); probes after it
        # rose again, so the fit ended on a rise, not on its plateau
        step = curve["last_step"]
        text = f"still rising when stopped at step {step} (the patience signal before min_steps held)"
        return {"status": RISING, "step": None, **found, "text": text}
    if curve.get("stopped_early") or at_ceiling:  # the threshold may be reached at the cap itself
        step = curve["last_step"]
        why = " (at the real images' level)" if at_ceiling else ""
        return {"status": CONVERGED, "step": step, **found, "text": f"converged at step {step}{why}"}
    if not curve.get("finished"):
        return {"status": UNFINISHED, "step": None, **found, "text": UNFINISHED}
    if reached is not None:
        return {"status": CONVERGED, "step": reached, **found, "text": f"converged at step {reached}"}
    return {"status": RISING, "step": None, **found, "text": f"{RISING} ({curve.get('max_steps')} steps)"}


def arm_statuses(config: ExperimentConfig, arms: dict) -> dict[str, dict[int, dict]]:
    """`{arm: {seed: status}}` of every run that holds a learning curve (`result["learning_curve"]`)."""
    spec = config.convergence or ConvergenceSpec()
    return {
        name: {int(seed): status(result.get("learning_curve"), spec) for seed, result in seeds.items()}
        for name, seeds in arms.items()
    }


def rising_arms(statuses: dict[str, dict[int, dict]]) -> dict[str, str]:
    """The arms a claim may not be judged on: some seed still rising at the cap (or its fit unfinished)."""
    rising = {}
    for name, seeds in statuses.items():
        still = [seed for seed, s in sorted(seeds.items()) if s["status"] in (RISING, UNFINISHED)]
        if still:
            rising[name] = f"still rising at the cap (seed {', '.join(map(str, still))})"
    return rising
