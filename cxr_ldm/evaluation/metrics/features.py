"""Evaluator features and predictions on images in [0, 1], batched; the FID feature-extractor module."""

from __future__ import annotations

import torch
from torch import nn


def to_model_range(images01: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> the batch contract's [-1, 1]."""
    return images01.float() * 2 - 1


@torch.no_grad()
def batched(
    fn, images01: torch.Tensor, device: torch.device | str = "cpu", batch_size: int = 64
) -> torch.Tensor:
    """Apply `fn` to [-1, 1] batches of `images01` on `device`; results on the CPU."""
    out = [
        fn(to_model_range(images01[i : i + batch_size]).to(device)).cpu()
        for i in range(0, len(images01), batch_size)
    ]
    return torch.cat(out)


class ClassifierFeatures(nn.Module):
    """`CxrClassifier.features` as a torchmetrics feature extractor: (N, C, H, W) in [0, 1] -> (N, D).

    Kept in eval mode (torchmetrics requires it); use with `normalize=True`, so float images pass unchanged.
    """

    def __init__(self, classifier) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = int(classifier.num_features)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        if images01.dtype == torch.uint8:
            images01 = images01.float() / 255
        return self.classifier.features(to_model_range(images01).to(self.classifier.device)).double()
