"""During `fit`: every N validations, generate from a fixed subset of prompts and log the cheap metrics."""

from __future__ import annotations

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid

from cxr_ldm.checkpoints import load_checkpoint
from cxr_ldm.data.mimic_tables import SPLIT_NAMES
from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.metrics.conditioned_classification import conditioned_classification
from cxr_ldm.evaluation.metrics.diversity import ms_ssim_diversity
from cxr_ldm.evaluation.metrics.features import batched
from cxr_ldm.evaluation.metrics.fid import fid_classifier
from cxr_ldm.evaluation.metrics.metric_names import FID, MS_SSIM
from cxr_ldm.generation.sampling import sample
from cxr_ldm.labels import CHEXPERT_LABELS
from cxr_ldm.sampler_names import SAMPLER_NAMES


class GenerationMetrics(Callback):
    """Log `eval/cond_accuracy`, `eval/cond_auroc` (per finding and mean), `eval/fid_xrv`, `eval/ms_ssim` and a
    grid of the samples of each prompt to TensorBoard.

    The subset is the first `num_images` items of the data module's `split` (the same every time): their
    prompts are generated `per_prompt` times each, their real images are the FID reference. Runs on rank
    zero only; the model's EMA weights are used when it keeps them.

    Args:
        classifier_ckpt: a `CxrClassifier` checkpoint (the evaluator, trained on real images).
        split: data module split whose prompts, labels and images are used.
        every_n_validations: run at every N-th validation (sanity check excluded).
        num_images: prompts taken from the split.
        per_prompt: samples per prompt (2 or more for MS-SSIM).
        num_inference_steps, guidance_scale, scheduler, seed: sampling settings; image i uses seed + i.
        batch_size: images per sampling call.
    """

    def __init__(
        self,
        classifier_ckpt: str,
        split: str = "validate",
        every_n_validations: int = 1,
        num_images: int = 16,
        per_prompt: int = 2,
        num_inference_steps: int = 15,
        guidance_scale: float = 4.0,
        scheduler: str = "dpm++",
        seed: int = 0,
        batch_size: int = 8,
    ) -> None:
        if split not in SPLIT_NAMES:
            raise ConfigError(f"GenerationMetrics.split must be one of {list(SPLIT_NAMES)}, got {split!r}")
        if scheduler not in SAMPLER_NAMES:
            raise ConfigError(
                f"GenerationMetrics.scheduler must be one of {list(SAMPLER_NAMES)}, got {scheduler!r}"
            )
        self.classifier_ckpt = classifier_ckpt
        self.split = split
        self.every = max(1, every_n_validations)
        self.num_images = num_images
        self.per_prompt = per_prompt
        self.sampling = {
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "scheduler": scheduler,
        }
        self.seed = seed
        self.batch_size = batch_size
        self.validations = 0
        self._classifier = None

    def classifier(self, device: torch.device):
        if self._classifier is None:
            from cxr_ldm.evaluation.evaluators import CxrClassifier

            self._classifier = load_checkpoint(
                self.classifier_ckpt, CxrClassifier, "GenerationMetrics.classifier_ckpt"
            )
        return self._classifier.to(device).eval()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Refuse at the start of the run what would fail at its N-th validation: a data module without the
        split, or a classifier checkpoint that is missing or holds another model."""
        if trainer.datamodule is None:
            raise ConfigError(
                "GenerationMetrics reads the labelled splits of a data module: give the fit one "
                "(cxr_ldm.data.MimicCxrDataModule), or leave the callback out"
            )
        datasets = getattr(trainer.datamodule, "datasets", None)
        if not isinstance(datasets, dict) or self.split not in datasets:
            found = sorted(datasets) if isinstance(datasets, dict) else "none"
            raise ConfigError(
                f"GenerationMetrics.split {self.split!r}: the data module {type(trainer.datamodule).__name__} "
                f"has no such split (its splits: {found}); GenerationMetrics reads the labelled splits of "
                "cxr_ldm.data.MimicCxrDataModule: use that data module, or leave the callback out"
            )
        self.classifier(torch.device("cpu"))

    def subset(self, trainer: Trainer) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        dataset = trainer.datamodule.datasets[self.split]
        items = [dataset[i] for i in range(min(self.num_images, len(dataset)))]
        images = torch.stack(
            [((it["pixel_values"].float().mean(0, keepdim=True) + 1) / 2).clamp(0, 1) for it in items]
        )
        labels = torch.stack([it["labels"] for it in items]) if "labels" in items[0] else None
        return [it["prompt"] for it in items], images, labels

    def state_dict(self) -> dict:
        """The validations counted so far, kept in the checkpoint: a resumed fit evaluates at the same
        validations as an uninterrupted one."""
        return {"validations": self.validations}

    def load_state_dict(self, state_dict: dict) -> None:
        self.validations = int(state_dict.get("validations", 0))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validations += 1
        if self.validations % self.every == 0:
            self._evaluate(trainer, pl_module)

    @rank_zero_only
    def _evaluate(self, trainer: Trainer, pl_module: LightningModule) -> None:
        prompts, real, labels = self.subset(trainer)
        expanded = [p for p in prompts for _ in range(self.per_prompt)]
        seeds = [self.seed + i for i in range(len(expanded))]
        fake = torch.cat(
            [
                sample(
                    pl_module,
                    expanded[i : i + self.batch_size],
                    seeds[i : i + self.batch_size],
                    **self.sampling,
                )
                for i in range(0, len(expanded), self.batch_size)
            ]
        ).mean(dim=1, keepdim=True)
        classifier = self.classifier(pl_module.device)
        metrics: dict[str, float] = {}
        if len(real) >= 2:
            metrics[f"eval/{FID}"] = fid_classifier(real, fake, classifier)
        if self.per_prompt >= 2:
            metrics[f"eval/{MS_SSIM}"] = ms_ssim_diversity(
                fake, [i // self.per_prompt for i in range(len(fake))]
            )
        if labels is not None:
            columns = [CHEXPERT_LABELS.index(f) for f in classifier.findings]
            probs = batched(lambda x: torch.sigmoid(classifier(x)), fake, classifier.device)
            values, _ = conditioned_classification(
                probs, labels[:, columns].repeat_interleave(self.per_prompt, dim=0), classifier.findings
            )
            metrics.update({f"eval/{k}": v for k, v in values.items()})
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_image"):
            for index, prompt in enumerate(prompts[:8]):
                grid = make_grid(
                    fake[index * self.per_prompt : (index + 1) * self.per_prompt], nrow=self.per_prompt
                )
                experiment.add_image(f"eval/samples/{index}", grid, trainer.global_step)
                experiment.add_text(f"eval/prompts/{index}", prompt, trainer.global_step)
