"""Train the evaluator classifier for one arm with a fixed budget and test it on real images.

Every arm gets exactly `steps` optimizer steps of `batch_size` images, drawn with replacement, so a
bigger training set buys variety, never extra compute.
"""

from __future__ import annotations

import time

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.evaluation.evaluators.classifier_training import train_classifier
from cxr_ldm.evaluation.metrics.conditioned_classification import evaluate_classifier
from cxr_ldm.evaluation.specs import ClassifierSettings


def run_arm(train: ImageSet, test: ImageSet, settings: ClassifierSettings, seed: int) -> dict:
    """Train and test one arm; the result dict is what the arm's JSON file holds."""
    start = time.perf_counter()
    model = train_classifier(train, settings, seed)
    metrics = evaluate_classifier(model, test)
    return {
        "metrics": metrics,
        "train_images": len(train),
        "test_images": len(test),
        "steps": settings.steps,
        "batch_size": settings.batch_size,
        "seconds": round(time.perf_counter() - start, 2),
    }
