"""Run the augmentation experiment at the end of `fit`, drawing synthetic sets with the just-trained model."""

from __future__ import annotations

from pathlib import Path

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from cxr_ldm.experiments.synthetic_augmentation import (
    AugmentationConfig,
    ClassifierSettings,
    SynthesisSettings,
    run_experiment,
)


class AugmentationExperiment(Callback):
    """Rank zero, after training: `run_experiment` with the fitted model (EMA weights when kept) as the source.

    Args:
        data: data config of the real images (default: the fit config's own data is not reachable from here,
            so name it; usually the same file as `--config`).
        out: output folder; default `<default_root_dir>/augment`.
        The other arguments are those of `AugmentationConfig` (docs/augmentation.md).
    """

    def __init__(
        self,
        data: str,
        out: str | None = None,
        data_overrides: dict | None = None,
        sizes: list[int] = [1000, 2000, 5000],  # noqa: B006 - copied, never mutated
        conditions: list[str] | None = None,
        seeds: list[int] = [0, 1, 2],  # noqa: B006 - copied, never mutated
        test_split: str = "test",
        classifier: ClassifierSettings | None = None,
        synthesis: SynthesisSettings | None = None,
    ) -> None:
        self.out = out
        defaults = AugmentationConfig()
        self.config = AugmentationConfig(
            out=out or defaults.out,
            data=data,
            data_overrides=dict(data_overrides or {}),
            sizes=list(sizes),
            conditions=list(conditions or defaults.conditions),
            seeds=list(seeds),
            test_split=test_split,
            classifier=classifier or ClassifierSettings(),
            synthesis=synthesis or SynthesisSettings(),
        ).validate(need_model=False)
        self.summary = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._run(trainer, pl_module)

    @rank_zero_only
    def _run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from cxr_ldm.generation.image_source import CheckpointSource

        if self.out is None:
            self.config.out = str(Path(trainer.default_root_dir) / "augment")
        self.config.synthesis.device = str(pl_module.device)
        was_training = pl_module.training
        try:
            self.summary = run_experiment(self.config, source=CheckpointSource(pl_module, pl_module.device))
        finally:
            pl_module.train(was_training)
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_text"):
            experiment.add_text(
                "augment/results", self.summary.outputs["table"].read_text(), trainer.global_step
            )
