"""Does the evaluator find, in each generated image, the findings its prompt asked for?"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc

from cxr_ldm.evaluation.metrics.metric_names import COND_AUROC, CONDITIONED

NAMES = CONDITIONED


def conditioned_classification(
    probabilities: torch.Tensor,
    labels: torch.Tensor,
    findings: list[str],
    threshold: float = 0.5,
    thresholds: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Per finding accuracy, balanced accuracy and AUROC of `probabilities` (N, F) against `labels` (N, F).

    A finding is called present at `thresholds[finding]` when given (see `operating_points`), else at
    `threshold`. Balanced accuracy (mean of sensitivity and specificity) does not reward calling a rare finding
    absent everywhere, as plain accuracy does. NaN labels (unknown) are left out. AUROC and balanced accuracy
    need both classes among the prompts; otherwise they are skipped with the reason. Returns (metrics, skipped).
    """
    metrics: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for j, finding in enumerate(findings):
        known = ~torch.isnan(labels[:, j])
        if not known.any():
            for name in NAMES:
                skipped[f"{name}/{finding}"] = "no prompt has this label"
            continue
        target = labels[known, j]
        prob = probabilities[known, j]
        cut = (thresholds or {}).get(finding, threshold)
        called = (prob >= cut).float()
        metrics[f"cond_accuracy/{finding}"] = float((called == target).float().mean())
        positives = int(target.sum())
        if 0 < positives < len(target):
            sensitivity = float(called[target == 1].mean())
            specificity = float(1 - called[target == 0].mean())
            metrics[f"cond_balanced_accuracy/{finding}"] = (sensitivity + specificity) / 2
            metrics[f"{COND_AUROC}/{finding}"] = float(binary_auroc(prob, target.long()))
        else:
            reason = f"prompts are all {'positive' if positives else 'negative'}"
            skipped[f"cond_balanced_accuracy/{finding}"] = skipped[f"{COND_AUROC}/{finding}"] = reason
    for name in NAMES:
        values = [v for k, v in metrics.items() if k.startswith(name + "/")]
        if values:
            metrics[name] = sum(values) / len(values)
    return metrics, skipped
