"""`CxrClassifier`: a torchxrayvision DenseNet that judges generated chest X-rays by their findings.

The evaluator must be trained on real images only. Pretrained torchxrayvision weights are never
downloaded: the user places the file in `weights_dir`; otherwise the network trains from scratch.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MultilabelAUROC

from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.evaluators.input_pixels import gray_at
from cxr_ldm.evaluation.evaluators.shared_step import SharedStepModule
from cxr_ldm.labels import CHEXPERT_LABELS, HEADLINE_FINDINGS, label_columns
from cxr_ldm.xrv import xrv

XRV_RANGE = 1024.0


def xrv_weights_path(weights: str, weights_dir: str | os.PathLike) -> Path:
    """Where torchxrayvision would keep the weight file `weights` inside `weights_dir`."""
    if weights not in xrv.models.model_urls:
        names = sorted(k for k in xrv.models.model_urls if k.startswith("densenet"))
        raise ConfigError(f"unknown torchxrayvision weights '{weights}'; choose one of {names}")
    url = xrv.models.model_urls[weights]["weights_url"]
    return Path(weights_dir).expanduser() / os.path.basename(url)


class CxrClassifier(SharedStepModule):
    """Multi-label finding classifier on 1-channel images, used as the evaluator of generated images.

    Args:
        findings: CheXpert findings to predict (subset of `cxr_ldm.labels.CHEXPERT_LABELS`).
        weights: a torchxrayvision DenseNet weight name (e.g. `densenet121-res224-mimic_ch`); its backbone
            is loaded from `weights_dir` and a new head is trained for `findings`. None trains from scratch.
        weights_dir: folder holding the weight file; nothing is downloaded.
        image_size: side of the square input; inputs of another size are resized.
        growth_rate, block_config, num_init_features: DenseNet shape (DenseNet-121 by default; smaller
            for CPU tests). Must be DenseNet-121's when `weights` is set.
        lr, weight_decay: AdamW settings.
    """

    def __init__(
        self,
        findings: list[str] = list(HEADLINE_FINDINGS),  # noqa: B006 - copied, never mutated
        weights: str | None = None,
        weights_dir: str | None = None,
        image_size: int = 224,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
    ) -> None:
        super().__init__()
        unknown = [f for f in findings if f not in CHEXPERT_LABELS]
        if unknown or not findings:
            raise ConfigError(
                f"model.init_args.findings: unknown {unknown}; choose from {list(CHEXPERT_LABELS)}"
            )
        self.save_hyperparameters()
        self.findings = list(findings)
        self.label_index = label_columns(self.findings)
        self.image_size = image_size
        self.net = self._build_backbone(
            weights, weights_dir, growth_rate, tuple(block_config), num_init_features
        )
        self.num_features = int(self.net.classifier.in_features)
        self.head = nn.Linear(self.num_features, len(self.findings))
        self.val_auroc = MultilabelAUROC(num_labels=len(self.findings), average=None, ignore_index=-1)
        self.test_auroc = MultilabelAUROC(num_labels=len(self.findings), average=None, ignore_index=-1)

    @staticmethod
    def _build_backbone(weights, weights_dir, growth_rate, block_config, num_init_features) -> nn.Module:
        if weights is None:
            return xrv.models.DenseNet(
                growth_rate=growth_rate, block_config=block_config, num_init_features=num_init_features
            )
        if weights_dir is None:
            raise ConfigError(
                "model.init_args.weights needs model.init_args.weights_dir (the folder with the file)"
            )
        path = xrv_weights_path(weights, weights_dir)
        if not path.is_file():
            url = xrv.models.model_urls[weights]["weights_url"]
            raise ConfigError(
                f"torchxrayvision weights file {path} is missing; nothing is downloaded at run time. "
                f"Fetch it on a machine with internet (`wget {url} -O {path}`, or run "
                f"`xrv.models.DenseNet(weights='{weights}', cache_dir='{path.parent}')` there) and copy it here, "
                "or set model.init_args.weights: null to train from scratch"
            )
        net = xrv.models.DenseNet(weights=weights, cache_dir=str(path.parent))
        # Resizing is ours (image_size); the op-threshold rescaling belongs to the replaced xrv head.
        for attr in ("input_resolution",):
            if hasattr(net, attr):
                delattr(net, attr)
        return net

    # ------------------------------------------------------------------ forward
    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        """Batch-contract pixels (B, C, H, W) in [-1, 1] -> 1-channel xrv range [-1024, 1024] at image_size."""
        pixels = gray_at(pixels, self.image_size)
        return pixels.clamp(-1, 1) * XRV_RANGE

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, num_features): the torchxrayvision `features2` used for FID."""
        maps = self.net.features(self.prepare(pixels))
        return F.adaptive_avg_pool2d(F.relu(maps), (1, 1)).flatten(1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits (B, len(findings))."""
        return self.head(self.features(pixels))

    @torch.no_grad()
    def predict_proba(self, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Probabilities in eval mode, batched, on the model's device; returned on the CPU."""
        was_training = self.training
        self.eval()
        try:
            out = [
                torch.sigmoid(self(pixels[i : i + batch_size].to(self.device))).cpu()
                for i in range(0, len(pixels), batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, len(self.findings))

    # ------------------------------------------------------------------ training
    def targets(self, batch: dict) -> torch.Tensor:
        return batch["labels"][:, self.label_index].float()

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["pixel_values"])
        target = self.targets(batch)
        known = ~torch.isnan(target)
        # Uncertain/blank labels under the `ignore` policy are NaN: they do not count in the loss.
        loss = (
            F.binary_cross_entropy_with_logits(logits[known], target[known])
            if known.any()
            else logits.sum() * 0
        )
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=stage != "test",
            batch_size=len(target),
            sync_dist=stage != "train",
        )
        if stage != "train":
            metric = self.val_auroc if stage == "val" else self.test_auroc
            metric.update(torch.sigmoid(logits), torch.where(known, target, -1).long())
        return loss

    def _log_auroc(self, metric: MultilabelAUROC, stage: str) -> None:
        values = metric.compute()
        metric.reset()
        for finding, value in zip(self.findings, values.tolist(), strict=True):
            self.log(f"{stage}/auroc/{finding}", value, sync_dist=False)
        self.log(f"{stage}/auroc", torch.nanmean(values), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._log_auroc(self.val_auroc, "val")

    def on_test_epoch_end(self) -> None:
        self._log_auroc(self.test_auroc, "test")

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
