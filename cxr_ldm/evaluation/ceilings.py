"""What real images score with the evaluator: its operating points (from real validation images, fixed before
any generated image is seen) and the ceilings every generated set is read against: the real test images,
their reconstructions through the pretrained VAE, and how far two real samples are apart in CXR FID / KID."""

from __future__ import annotations

from dataclasses import replace

import torch

from cxr_ldm.data.image_set import ImageSet, to_uint8
from cxr_ldm.evaluation.metrics.conditioned_classification import (
    classify_image_set,
    finding_labels,
    image_set_probabilities,
)
from cxr_ldm.evaluation.metrics.fid import fid_classifier, kid_classifier
from cxr_ldm.evaluation.metrics.metric_names import FID, KID, on_real_images
from cxr_ldm.evaluation.metrics.operating_points import operating_points
from cxr_ldm.evaluation.metrics.reconstruction import reconstruct


def distances(real: ImageSet, other: ImageSet, evaluator) -> dict:
    """CXR FID and KID (evaluator features) of `other` against `real`."""
    real01, other01 = real.pixels01(), other.pixels01()
    return {FID: fid_classifier(real01, other01, evaluator), KID: kid_classifier(real01, other01, evaluator)}


def vae_reconstructions(vae, images: ImageSet) -> ImageSet:
    """The real images through the pretrained VAE (posterior mode): the most any generated image can keep."""
    with torch.no_grad():
        decoded = reconstruct(vae, images.pixels01(), batch_size=64)
    return replace(images, images=to_uint8(decoded * 2 - 1))


def evaluator_cuts(evaluator, validate: ImageSet) -> dict[str, float]:
    """The evaluator's operating point per finding, chosen on real validation images."""
    return operating_points(
        image_set_probabilities(evaluator, validate), finding_labels(evaluator, validate), evaluator.findings
    )


def real_ceilings(evaluator, cuts: dict[str, float], validate: ImageSet, test: ImageSet, vae) -> dict:
    """The evaluator on real test images and on their VAE reconstructions (at `cuts`), and validation vs test."""
    validate_vs_test = distances(test, validate, evaluator)
    real_test = on_real_images(classify_image_set(evaluator, test, cuts))
    reconstructed = on_real_images(classify_image_set(evaluator, vae_reconstructions(vae, test), cuts))
    return {"real_test": real_test, "vae_reconstructions": reconstructed, "thresholds": cuts,
            "validate_vs_test": validate_vs_test}  # fmt: skip
