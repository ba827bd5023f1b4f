"""A learning curve during `fit`: every N steps, a small finding probe of the model being trained, judged by
the experiment's evaluator, so that Lightning's `EarlyStopping` can stop a fit on its plateau.

The probe is the protocol's finding probe made small (evaluation/protocol.py): one prompt per finding
(the probe set, evaluation/probe_set.py), `images_per_finding` images each drawn from the EMA weights with
fixed seeds, `sample_steps` sampler steps; the evaluator calls each finding at its operating point, and the
macro balanced accuracy over the findings (`probe/balanced_accuracy`) is logged with `self.log` (what
`EarlyStopping(monitor="probe/balanced_accuracy", mode="max")` reads) and, with every finding's value, to the
logger (TensorBoard) at the training step.

Its randomness is its own: each image's noise comes from a generator seeded with `seed + image`, and the
whole probe runs inside `torch.random.fork_rng`, so training draws the same numbers with or without it.
Its records (step, value, per finding) are kept in the checkpoint (the callback's state), so a resumed fit
keeps the curve so far, and written to `<default_root_dir>/learning_curve.json` with how the fit ended.

The probe runs at the end of a training batch whose step is a multiple of `every_n_steps`, before the
checkpoints of that step are saved (Lightning runs checkpoint callbacks last). `ProbeEarlyStopping`
(Lightning's `EarlyStopping` on the probe's metric) checks right after the probe, at the end of the same
batch, not at validation: the checkpoint of a probe's step holds the probe and the stopping rule's count
of it, so a fit killed after that checkpoint and resumed from it stops at the step an uninterrupted fit
stops at (checked at validation, which runs after the checkpoint, the resumed fit would not count the
probe of its checkpoint's step and could stop one probe later). Keep `trainer.val_check_interval` at
`every_n_steps` (validation loss and samples at each probe; checked when an EarlyStopping watches the probe).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from cxr_ldm.data.atomic import write_text_atomic
from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.metrics.conditioned_classification import conditioned_classification
from cxr_ldm.evaluation.probe_set import ProbeSet, read_probe_set
from cxr_ldm.generation.sampling import sample

METRIC = "probe/balanced_accuracy"
RECORD_FILE = "learning_curve.json"
# the record's `stopping_reason` of a fit stopped because its probe reached the stopping threshold
AT_THRESHOLD = EarlyStoppingReason.STOPPING_THRESHOLD.name.lower()


class LearningCurveProbe(Callback):
    """Args:
    probe_set: the probe set file (evaluator, cuts, one prompt per finding).
    every_n_steps: probe at every multiple of this many training steps.
    images_per_finding / sample_steps / guidance / scheduler: the probe's images.
    seed: image i of the probe is drawn with seed `seed + i`, at every step the same.
    batch_size: images per sampling batch.
    """

    def __init__(
        self,
        probe_set: str,
        every_n_steps: int = 200,
        images_per_finding: int = 32,
        sample_steps: int = 10,
        guidance: float = 4.0,
        scheduler: str = "dpm++",
        seed: int = 4000,
        batch_size: int = 64,
    ) -> None:
        for key in ("every_n_steps", "images_per_finding", "sample_steps", "batch_size"):
            if locals()[key] < 1:
                raise ConfigError(f"LearningCurveProbe.{key} must be at least 1, got {locals()[key]}")
        self.probe_set = str(probe_set)
        self.every_n_steps = every_n_steps
        self.images_per_finding = images_per_finding
        self.sample_steps = sample_steps
        self.guidance = guidance
        self.scheduler = scheduler
        self.seed = seed
        self.batch_size = batch_size
        self.records: list[dict] = []
        self._probes: ProbeSet | None = None

    # ------------------------------------------------------------------ state (kept in checkpoints)
    @property
    def state_key(self) -> str:
        return self._generate_state_key(probe_set=self.probe_set, every_n_steps=self.every_n_steps)

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.records = [dict(r) for r in state_dict.get("records", [])]

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        interval = trainer.val_check_interval
        watched = [c for c in trainer.callbacks if getattr(c, "monitor", None) == METRIC]
        if watched and isinstance(interval, int) and interval != self.every_n_steps:
            raise ConfigError(
                f"LearningCurveProbe.every_n_steps is {self.every_n_steps} but trainer.val_check_interval is "
                f"{interval}: EarlyStopping on {METRIC} checks at validation, so set both to the same steps"
            )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or any(r["step"] == step for r in self.records):
            return
        record = self._probe(trainer, pl_module) if trainer.is_global_zero else None
        record = trainer.strategy.broadcast(record, src=0)
        self.records.append(record)
        pl_module.log(METRIC, record["value"], on_step=True, on_epoch=False, logger=False, batch_size=1)
        if trainer.is_global_zero and trainer.logger is not None:
            scalars = {
                METRIC: record["value"],
                **{f"{METRIC}/{f}": v for f, v in record["per_finding"].items()},
            }
            trainer.logger.log_metrics(scalars, step=step)
        self._write(trainer, finished=False)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, finished=True)

    # ------------------------------------------------------------------ the probe
    def _probe(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if self._probes is None:  # building the evaluator draws its initial weights: inside fork_rng too
                self._probes = read_probe_set(self.probe_set)
            probes = self._probes
            evaluator = probes.evaluator.to(pl_module.device)
            count = self.images_per_finding
            prompts = [p for p in probes.prompts for _ in range(count)]
            seeds = [self.seed + i for i in range(len(prompts))]
            images = torch.cat([
                sample(pl_module, prompts[i : i + self.batch_size], seeds[i : i + self.batch_size],
                       num_inference_steps=self.sample_steps, guidance_scale=self.guidance, scheduler=self.scheduler)
                for i in range(0, len(prompts), self.batch_size)
            ])  # fmt: skip
            # as the protocol judges saved images: 8-bit pixels, then the [-1, 1] batch contract
            pixels = (images.clamp(0, 1) * 255).round() / 127.5 - 1.0
            probabilities = evaluator.predict_proba(pixels)
        labels = probes.labels.repeat_interleave(count, dim=0)
        metrics, _ = conditioned_classification(
            probabilities, labels, evaluator.findings, thresholds=probes.cuts
        )
        prefix = "cond_balanced_accuracy/"
        per_finding = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
        return {"step": int(trainer.global_step), "value": float(metrics["cond_balanced_accuracy"]),
                "per_finding": per_finding}  # fmt: skip

    def _write(self, trainer: Trainer, finished: bool) -> None:
        if not trainer.is_global_zero:
            return
        document = {
            "metric": METRIC,
            "every_n_steps": self.every_n_steps,
            "images_per_finding": self.images_per_finding,
            "sample_steps": self.sample_steps,
            "records": self.records,
            "last_step": int(trainer.global_step),
            "max_steps": int(trainer.max_steps),
            "finished": finished,
            # the fit ended before its cap because a callback (EarlyStopping) asked it to stop
            "stopped_early": finished
            and trainer.should_stop
            and 0 < trainer.max_steps
            and trainer.global_step < trainer.max_steps,
            **_stopping_rule(trainer),
        }
        path = Path(trainer.default_root_dir) / RECORD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(document, indent=2) + "\n")


def _stopping_rule(trainer: Trainer) -> dict:
    """The probe's EarlyStopping, as the record keeps it: its threshold and why it stopped the fit (if it did)."""
    stops = [c for c in trainer.callbacks if isinstance(c, ProbeEarlyStopping)]
    if not stops:
        return {}
    reason = stops[0].stopping_reason
    return {"stopping_threshold": stops[0].stopping_threshold,
            "stopping_reason": None if reason == EarlyStoppingReason.NOT_STOPPED else reason.name.lower()}  # fmt: skip


class ProbeEarlyStopping(EarlyStopping):
    """Lightning's `EarlyStopping` on the probe (`monitor=METRIC`, mode max), checked at the end of each probe
    step's training batch, after `LearningCurveProbe` (which must come before it among the callbacks), so that
    the step's checkpoint holds the check (module docstring). Args: every_n_steps (the probe's), and
    EarlyStopping's patience, min_delta, stopping_threshold; min_steps are the Trainer's.

    A stop signalled before the Trainer's `min_steps` holds until then (Lightning keeps `should_stop`); the
    signal (its `stopping_reason`) is part of this callback's state, so a fit resumed from a checkpoint between the signal and
    `min_steps` stops at `min_steps` as the uninterrupted fit does (Lightning does not keep `should_stop`)."""

    def __init__(self, every_n_steps: int, **kwargs) -> None:
        super().__init__(monitor=METRIC, mode="max", check_on_train_epoch_end=False, **kwargs)
        self.every_n_steps = every_n_steps
        self.checked_step = 0  # the last step checked (the micro-batches of one step end at the same step)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "checked_step": self.checked_step}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.checked_step = int(state_dict.get("checked_step", 0))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.stopping_reason != EarlyStoppingReason.NOT_STOPPED:  # resumed after its signal: it stands
            trainer.should_stop = True

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        probes = [i for i, c in enumerate(trainer.callbacks) if isinstance(c, LearningCurveProbe)]
        if not probes or probes[0] > trainer.callbacks.index(self):
            raise ConfigError(
                "ProbeEarlyStopping checks the probe's value: put a LearningCurveProbe before it"
            )

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pass  # checked at the probe's step instead

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        step = trainer.global_step
        if (
            step == 0
            or step % self.every_n_steps
            or step == self.checked_step
            or self._should_skip_check(trainer)
        ):
            return
        self.checked_step = step
        self._run_early_stopping_check(trainer)


def read_learning_curve(folder: Path) -> dict | None:
    """The learning curve a fit under `folder` (its default_root_dir) wrote, or None (none was recorded)."""
    try:
        return json.loads((Path(folder) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
