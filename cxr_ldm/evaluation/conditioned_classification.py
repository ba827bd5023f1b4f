"""Does the evaluator find, in each generated image, the findings its prompt asked for?"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc


def conditioned_classification(
    probabilities: torch.Tensor, labels: torch.Tensor, findings: list[str], threshold: float = 0.5
) -> tuple[dict[str, float], dict[str, str]]:
    """Per finding accuracy (at `threshold`) and AUROC of `probabilities` (N, F) against `labels` (N, F).

    NaN labels (unknown) are left out. AUROC needs both classes among the prompts; otherwise it is skipped
    with the reason. Returns (metrics, skipped).
    """
    metrics: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for j, finding in enumerate(findings):
        known = ~torch.isnan(labels[:, j])
        if not known.any():
            skipped[f"cond_accuracy/{finding}"] = skipped[f"cond_auroc/{finding}"] = (
                "no prompt has this label"
            )
            continue
        target = labels[known, j]
        prob = probabilities[known, j]
        metrics[f"cond_accuracy/{finding}"] = float(((prob >= threshold).float() == target).float().mean())
        positives = int(target.sum())
        if 0 < positives < len(target):
            metrics[f"cond_auroc/{finding}"] = float(binary_auroc(prob, target.long()))
        else:
            skipped[f"cond_auroc/{finding}"] = f"prompts are all {'positive' if positives else 'negative'}"
    for name in ("cond_accuracy", "cond_auroc"):
        values = [v for k, v in metrics.items() if k.startswith(name + "/")]
        if values:
            metrics[name] = sum(values) / len(values)
    return metrics, skipped
