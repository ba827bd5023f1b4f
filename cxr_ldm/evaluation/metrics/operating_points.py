"""Per-finding decision thresholds for the evaluator, chosen on real images before it sees generated ones.

A classifier trained with a plain BCE loss on imbalanced labels rarely puts its best cut at 0.5 (a finding
seen in 10% of images sits far lower), so "accuracy at 0.5" mostly measures prevalence. The operating point
maximising Youden's J (sensitivity + specificity - 1) on real held-out images is the honest fixed cut.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_roc


def youden_threshold(probabilities: torch.Tensor, target: torch.Tensor) -> float:
    """The cut that maximises sensitivity + specificity on (probabilities, 0/1 target); 0.5 if one class."""
    positives = int(target.sum())
    if positives == 0 or positives == len(target):
        return 0.5
    fpr, tpr, thresholds = binary_roc(probabilities.float(), target.long())
    best = int(torch.argmax(tpr - fpr))
    return float(thresholds[best].clamp(0.0, 1.0))


def operating_points(
    probabilities: torch.Tensor, labels: torch.Tensor, findings: list[str]
) -> dict[str, float]:
    """Youden thresholds per finding; `labels` (N, F) may hold NaN for unknown labels, which are left out."""
    points = {}
    for j, finding in enumerate(findings):
        known = ~torch.isnan(labels[:, j])
        points[finding] = youden_threshold(probabilities[known, j], labels[known, j])
    return points
