"""Does the evaluator find, in each generated image, the findings its prompt asked for? (And the same
measure of a trained classifier on any labelled image set, real test images included.)"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.evaluation.evaluators.cxr_classifier import CxrClassifier
from cxr_ldm.evaluation.metrics.metric_names import COND_AUROC, CONDITIONED, on_real_images
from cxr_ldm.labels import label_columns

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
    absent everywhere, as plain accuracy does. NaN labels (unknown) and -1 (uncertain, as a prompt file may
    give the CheXpert value) are left out: only 1 and 0 are targets. AUROC and balanced accuracy
    need both classes among the prompts; otherwise they are skipped with the reason. Returns (metrics, skipped).
    """
    metrics: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for j, finding in enumerate(findings):
        known = (labels[:, j] == 0) | (labels[:, j] == 1)
        if not known.any():
            for name in NAMES:
                skipped[f"{name}/{finding}"] = "no prompt has this label (as 1 or 0)"
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


def image_set_probabilities(model: CxrClassifier, images: ImageSet) -> torch.Tensor:
    """The classifier's probabilities (N, findings) on a uint8 image set."""
    return model.predict_proba(images.pixels())


def finding_labels(model: CxrClassifier, images: ImageSet) -> torch.Tensor:
    """The set's labels (N, findings) in the classifier's finding order."""
    return images.labels[:, label_columns(model.findings)]


def classify_image_set(
    model: CxrClassifier, images: ImageSet, thresholds: dict[str, float] | None = None
) -> dict[str, float]:
    """`conditioned_classification` of the classifier on a labelled image set (cuts from `thresholds`, else 0.5)."""
    found, _ = conditioned_classification(
        image_set_probabilities(model, images),
        finding_labels(model, images),
        model.findings,
        thresholds=thresholds,
    )
    return found


def evaluate_classifier(model: CxrClassifier, test: ImageSet) -> dict[str, float]:
    """AUROC and accuracy (threshold 0.5) per finding and their macro means, on real test images."""
    return on_real_images(classify_image_set(model, test))
