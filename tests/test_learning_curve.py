"""Learning curves and convergence at toy budgets: Lightning's EarlyStopping on the probe's metric stops a flat
curve and lets a rising one run to the cap; an arm still rising makes its claims undecided; the probe leaves
training's random numbers alone; its records survive a resume."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from _tiny_run import TINY, load_state
from lightning import Callback, LightningModule
from torch.utils.data import DataLoader

from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.learning_curve import (
    AT_THRESHOLD,
    METRIC,
    RECORD_FILE,
    LearningCurveProbe,
    read_learning_curve,
)
from cxr_ldm.experiments.convergence import CONVERGED, RISING, early_stopping, status, stopping_threshold
from cxr_ldm.experiments.spec import ConvergenceSpec

SPEC = ConvergenceSpec(every_n_steps=5, patience=2, min_delta=0.03, images_per_finding=64)
FLAT = [0.50, 0.60, 0.61, 0.60, 0.62, 0.61, 0.60, 0.61, 0.62, 0.60]  # a plateau from step 10
RISING_CURVE = [0.50 + 0.04 * k for k in range(10)]  # up by more than min_delta at every probe


class ScriptedProbe(LearningCurveProbe):
    """The learning-curve probe with its measurement replaced by a scripted curve: value k at step 5(k + 1)."""

    def __init__(self, curve: list[float], **kwargs) -> None:
        super().__init__("unused.pt", every_n_steps=SPEC.every_n_steps, **kwargs)
        self.curve = curve

    def _probe(self, trainer, pl_module) -> dict:
        step = trainer.global_step
        return {"step": step, "value": self.curve[step // self.every_n_steps - 1], "per_finding": {}}


class Regression(LightningModule):
    """A linear model trained on fixed random data: a real, tiny fit."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def regression_data() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 4, generator=generator)
    return DataLoader(list(zip(x, x.sum(1, keepdim=True), strict=True)), batch_size=4)


def scripted_fit(
    root: Path, curve: list[float], min_steps: int | None = None, threshold: float | None = None
) -> dict:
    from _tiny_run import tiny_trainer

    trainer = tiny_trainer(root, max_steps=50, min_steps=min_steps, min_epochs=0, val_check_interval=SPEC.every_n_steps,
                           check_val_every_n_epoch=None, limit_val_batches=1,
                           callbacks=[ScriptedProbe(curve), early_stopping(SPEC, threshold)])  # fmt: skip
    trainer.fit(Regression(), regression_data(), regression_data())
    return read_learning_curve(root)


def test_early_stopping_stops_a_flat_curve_and_lets_a_rising_one_run_to_the_cap(tmp_path: Path) -> None:
    flat = scripted_fit(tmp_path / "flat", FLAT)
    # improvements at steps 5 and 10; steps 15 and 20 bring none: patience 2 is spent at step 20
    assert flat["last_step"] == 20 and flat["stopped_early"] and flat["finished"]
    assert [r["step"] for r in flat["records"]] == [5, 10, 15, 20]
    found = status(flat, SPEC)
    assert (
        found["status"] == CONVERGED and found["text"] == "converged at step 20" and found["best_step"] == 10
    )
    # convergence.min_steps (Trainer(min_steps)): a flat start is not taken for the plateau
    warmed = scripted_fit(tmp_path / "warm", FLAT, min_steps=35)
    assert warmed["stopped_early"] and warmed["last_step"] == 35
    assert status(warmed, SPEC)["text"] == "converged at step 35"
    # a patience signal at step 15, held to min_steps 35 while the curve took off: ended on a rise, not converged
    took_off = scripted_fit(
        tmp_path / "took-off", [0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9], min_steps=35
    )
    assert took_off["stopped_early"] and took_off["last_step"] == 35
    assert status(took_off, SPEC)["status"] == RISING
    assert status(took_off, SPEC)["text"].startswith("still rising when stopped at step 35")
    rising = scripted_fit(tmp_path / "rising", RISING_CURVE)
    assert rising["last_step"] == 50 and not rising["stopped_early"]
    assert len(rising["records"]) == 10
    assert status(rising, SPEC)["status"] == RISING
    # a fit that reached the cap on its plateau is converged: its last `patience` probes brought nothing
    at_cap = {**rising, "records": [{**r, "value": min(r["value"], 0.7)} for r in rising["records"]]}
    assert status(at_cap, SPEC)["status"] == CONVERGED


class Killed(Callback):
    """Stops the fit with an error at `step` (a stand-in for SIGKILL: only the checkpoints on disk survive)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("killed")


def checkpointed_fit(
    root: Path, killed_at: int | None = None, resume: bool = False, curve: list[float] = FLAT,
    min_steps: int | None = None, threshold: float | None = None,
) -> dict:  # fmt: skip
    """A scripted fit (default: the flat one) with a last checkpoint every probe step (as the phantom recipe's
    RunCheckpoint)."""
    from _tiny_run import tiny_trainer

    from cxr_ldm.checkpoints import RunCheckpoint

    callbacks = [ScriptedProbe(curve), early_stopping(SPEC, threshold),
                 RunCheckpoint(save_last=True, every_n_train_steps=SPEC.every_n_steps, save_top_k=0)]  # fmt: skip
    trainer = tiny_trainer(root, max_steps=50, min_steps=min_steps, min_epochs=0, val_check_interval=SPEC.every_n_steps,
                           check_val_every_n_epoch=None, limit_val_batches=1, enable_checkpointing=True,
                           callbacks=callbacks + ([Killed(killed_at)] if killed_at else []))  # fmt: skip
    try:
        trainer.fit(Regression(), regression_data(), regression_data(), ckpt_path="last" if resume else None)
    except RuntimeError as error:
        assert killed_at and str(error) == "killed"
    return read_learning_curve(root)


@pytest.mark.parametrize("killed_at", [12, 17])
def test_a_fit_killed_after_a_probe_step_s_checkpoint_stops_where_an_uninterrupted_one_does(
    tmp_path: Path, killed_at: int
) -> None:
    """Killed after the checkpoint of step 10 or 15 (each written right after that step's probe) and resumed
    from it: EarlyStopping has counted that probe, so the resumed fit stops at step 20 as the straight one."""
    straight = checkpointed_fit(tmp_path / "straight")
    assert straight["stopped_early"] and straight["last_step"] == 20
    checkpointed_fit(tmp_path / "killed", killed_at=killed_at)
    resumed = checkpointed_fit(tmp_path / "killed", resume=True)
    assert resumed["records"] == straight["records"]
    assert (resumed["last_step"], resumed["stopped_early"]) == (20, True)


def test_a_fit_stops_at_the_first_probe_within_the_margin_of_the_real_images_ceiling(tmp_path: Path) -> None:
    """convergence.ceiling_margin: the rising curve (0.50, 0.54, ... at steps 5, 10, ...) stops at its first
    probe at or above the real test images' balanced accuracy less the margin, and is converged there."""
    spec = ConvergenceSpec(**{**asdict(SPEC), "ceiling_margin": 0.05})
    threshold = stopping_threshold(spec, {"real_test": {"balanced_accuracy": 0.70}})
    assert threshold == 0.65 and stopping_threshold(SPEC, {"real_test": {"balanced_accuracy": 0.70}}) is None
    stopped = scripted_fit(tmp_path / "ceiling", RISING_CURVE, threshold=threshold)
    assert [r["value"] for r in stopped["records"]] == pytest.approx([0.50, 0.54, 0.58, 0.62, 0.66])
    assert stopped["last_step"] == 25 and stopped["stopped_early"]
    assert (stopped["stopping_threshold"], stopped["stopping_reason"]) == (0.65, AT_THRESHOLD)
    assert status(stopped, spec)["text"] == "converged at step 25 (at the real images' level)"
    # reached at the cap's own probe (0.86 at step 50, 0.82 before): converged there, though rising by patience
    at_cap = scripted_fit(tmp_path / "at-cap", RISING_CURVE, threshold=0.85)
    assert (
        at_cap["last_step"] == 50
        and not at_cap["stopped_early"]
        and at_cap["stopping_reason"] == AT_THRESHOLD
    )
    assert status(at_cap, spec)["text"] == "converged at step 50 (at the real images' level)"
    # below the threshold all the way, the same curve still runs to its cap, and the patience rule says why a
    # flat one stopped
    assert not scripted_fit(tmp_path / "high", RISING_CURVE, threshold=0.99)["stopped_early"]
    flat = scripted_fit(tmp_path / "flat", FLAT, threshold=0.99)
    assert (
        flat["stopping_reason"] == "patience_exhausted"
        and status(flat, spec)["text"] == "converged at step 20"
    )
    with pytest.raises(ConfigError, match="convergence.ceiling_margin"):
        ConvergenceSpec(ceiling_margin=-0.1).validate(4)


# the threshold 0.8 is reached at step 10, before min_steps 30; the curve then keeps improving by more than
# min_delta, so a resumed fit that forgot the signal would run on to step 40
SIGNAL_THEN_RISING = [0.50, 0.85, 0.55, 0.60, 0.70, 0.75, 0.78, 0.79, 0.80, 0.80]


@pytest.mark.parametrize("killed_at", [17, 22])
def test_a_stop_signalled_before_min_steps_holds_after_a_resume(tmp_path: Path, killed_at: int) -> None:
    """Signalled at step 10 and held to min_steps 30 (Lightning keeps `should_stop`, not in its checkpoint):
    killed after the checkpoint of step 15 or 20 and resumed, the fit still stops at step 30."""
    run = {"curve": SIGNAL_THEN_RISING, "min_steps": 30, "threshold": 0.8}
    straight = checkpointed_fit(tmp_path / "straight", **run)
    assert (straight["last_step"], straight["stopping_reason"]) == (30, AT_THRESHOLD)
    checkpointed_fit(tmp_path / "killed", killed_at=killed_at, **run)
    resumed = checkpointed_fit(tmp_path / "killed", resume=True, **run)
    assert resumed["records"] == straight["records"]
    assert (resumed["last_step"], resumed["stopped_early"], resumed["stopping_reason"]) == (
        30,
        True,
        AT_THRESHOLD,
    )


def test_an_arm_still_rising_at_the_cap_makes_its_claims_undecided(tmp_path: Path) -> None:
    from test_claims import arm_results, experiment, verdicts

    rising = scripted_fit(tmp_path / "rising", RISING_CURVE)
    flat = scripted_fit(tmp_path / "flat", FLAT)
    config = experiment("paper.yaml")
    config.convergence = SPEC
    values = {
        "unet-text": [0.80, 0.81, 0.82],
        "unet": [0.50, 0.51, 0.52],
        "domain-frozen-unet": [0.7, 0.71, 0.72],
    }
    curves = {"unet-text": {s: {"learning_curve": flat} for s in range(3)},
              "domain-frozen-unet": {s: {"learning_curve": flat} for s in range(3)},
              "unet": {0: {"learning_curve": flat}, 1: {"learning_curve": rising}, 2: {"learning_curve": flat}}}  # fmt: skip
    found = verdicts(config, arm_results(values, curves))
    for claim in ("C1", "C3"):  # both compare the U-Net-only arm, whose seed 1 is still rising
        assert found[claim]["verdict"] == "undecided"
        assert "unet still rising at the cap (seed 1)" in found[claim]["comparisons"][0]["text"]
    converged = {**curves, "unet": {s: {"learning_curve": flat} for s in range(3)}}
    found = verdicts(config, arm_results(values, converged))
    assert found["C1"]["verdict"] == "holds" and found["C3"]["verdict"] == "holds"
    # results of a run without learning curves (an older run) are judged as before
    assert verdicts(config, arm_results(values))["C1"]["verdict"] == "holds"


def test_the_probe_must_check_where_early_stopping_does(tmp_path: Path) -> None:
    from _tiny_run import tiny_trainer

    trainer = tiny_trainer(tmp_path, max_steps=10, val_check_interval=3, check_val_every_n_epoch=None,
                           callbacks=[ScriptedProbe(FLAT), early_stopping(SPEC)])  # fmt: skip
    with pytest.raises(ConfigError, match="trainer.val_check_interval"):
        trainer.fit(Regression(), regression_data(), regression_data())
    with pytest.raises(ConfigError, match="images_per_finding 8: .* use at least 24"):
        ConvergenceSpec(images_per_finding=8).validate(4)


# A real tiny fit (configs/tiny.yaml on the phantom) with the probe of an untrained tiny evaluator.


def probe_set(folder: Path) -> Path:
    from cxr_ldm.evaluation.evaluators.classifier_training import build_classifier
    from cxr_ldm.evaluation.probe_set import write_probe_set
    from cxr_ldm.evaluation.specs import ClassifierSettings
    from cxr_ldm.generation.finding_prompts import finding_prompts

    findings = ["Cardiomegaly", "Pleural Effusion", "Pneumothorax", "No Finding"]
    torch.manual_seed(0)
    settings = ClassifierSettings(findings=findings, image_size=32, growth_rate=4, block_config=[1, 1],
                                  num_init_features=8)  # fmt: skip
    records = finding_prompts(findings, "labels")
    return write_probe_set(
        folder / "probe_set.pt", build_classifier(settings), dict.fromkeys(findings, 0.5), records
    )


def tiny_fit(run: Path, data_root: Path, steps: int, probe: Path | None, resume: bool = False):
    from cxr_ldm.training.fit import fit

    overrides = {"data.init_args.root": str(data_root), "data.init_args.cache_dir": str(run.parent / "cache"),
                 "trainer.default_root_dir": str(run), "trainer.logger.init_args.save_dir": str(run),
                 "trainer.enable_progress_bar": False, "trainer.max_steps": steps,
                 # an epoch of 2 steps: each epoch's shuffle draws from the global generator after a probe
                 "trainer.limit_train_batches": 2}  # fmt: skip
    callbacks = []
    if probe is not None:
        callbacks = [LearningCurveProbe(str(probe), every_n_steps=2, images_per_finding=1, sample_steps=2)]
    return fit([TINY], overrides, ckpt_path="last" if resume else None, callbacks=callbacks)


def test_the_probe_leaves_training_alone_and_its_records_survive_a_resume(
    tmp_path: Path, phantom_root
) -> None:
    probe = probe_set(tmp_path)
    tiny_fit(tmp_path / "plain", phantom_root, 4, None)
    tiny_fit(tmp_path / "probed", phantom_root, 4, probe)
    plain = load_state(tmp_path / "plain" / "checkpoints" / "last.ckpt")
    probed = load_state(tmp_path / "probed" / "checkpoints" / "last.ckpt")
    assert plain["global_step"] == probed["global_step"] == 4
    for key, tensor in plain["state_dict"].items():  # the same training random numbers: the same weights
        assert torch.equal(tensor, probed["state_dict"][key]), key
    (state,) = [v for k, v in probed["callbacks"].items() if k.startswith("LearningCurveProbe")]
    assert [r["step"] for r in state["records"]] == [2, 4]
    assert all(0.0 <= r["value"] <= 1.0 and len(r["per_finding"]) == 4 for r in state["records"])

    cli = tiny_fit(tmp_path / "probed", phantom_root, 6, probe, resume=True)  # a new probe, resumed
    (resumed,) = [c for c in cli.trainer.callbacks if isinstance(c, LearningCurveProbe)]
    assert [r["step"] for r in resumed.records] == [2, 4, 6]
    assert resumed.records[:2] == state["records"]
    written = json.loads((tmp_path / "probed" / RECORD_FILE).read_text())
    assert [r["step"] for r in written["records"]] == [2, 4, 6] and written["finished"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = []
    for events in (tmp_path / "probed").glob("tensorboard/version_*/events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if METRIC in accumulator.Tags()["scalars"]:
            steps += [event.step for event in accumulator.Scalars(METRIC)]
    assert sorted(steps) == [2, 4, 6]
