"""The metric vocabulary: one name per metric, used by `evaluate`, the `GenerationMetrics` callback (as
`eval/<name>`), the demo, the augmentation experiment and the benches. docs/evaluation.md lists them.

Per-finding values are `<name>/<finding>`; the name alone is the macro mean over findings.
"""

from __future__ import annotations

# Image quality: distances between real and generated images in the evaluator's feature space.
FID = "fid_xrv"  # Frechet distance on torchxrayvision DenseNet `features2` (the evaluator classifier)
KID = "kid_xrv"  # kernel distance on the same features
FID_INCEPTION = "fid_inception"  # FID on InceptionV3 features (needs its weights file)
MS_SSIM = "ms_ssim"  # diversity: mean MS-SSIM between samples of one prompt

# The evaluator classifier on GENERATED images, scored against the labels of the prompts they came from.
COND_ACCURACY = "cond_accuracy"
COND_BALANCED_ACCURACY = "cond_balanced_accuracy"
COND_AUROC = "cond_auroc"
CONDITIONED = (COND_ACCURACY, COND_BALANCED_ACCURACY, COND_AUROC)

# A classifier on REAL labelled images (augmentation arms on the real test split, the demo's real and VAE
# reconstructed test images): the same computation, without the `cond_` prefix, which means "against the prompt".
ACCURACY = "accuracy"
BALANCED_ACCURACY = "balanced_accuracy"
AUROC = "auroc"
CLASSIFICATION = (AUROC, ACCURACY, BALANCED_ACCURACY)
_ON_REAL = dict(zip(CONDITIONED, (ACCURACY, BALANCED_ACCURACY, AUROC), strict=True))

# Which way is better, for a claim that names the metric (experiments/claims.py): distances are better
# lower; classification, retrieval and precision better higher. Other metrics (MS-SSIM diversity, memorization
# distances, ...) have no better side by themselves: a claim on one says which it means.
LOWER_IS_BETTER = (FID, KID, FID_INCEPTION)
HIGHER_IS_BETTER = (*CONDITIONED, *CLASSIFICATION)
HIGHER_IS_BETTER_PREFIXES = ("t2i_recall@", "i2i_precision@")


def better_direction(key: str) -> str | None:
    """`higher` or `lower` for a results key (`probe/cond_auroc`, `test_prompts/fid_xrv/Edema`, ...) whose
    metric has a better side; None for any other."""
    for part in reversed(key.split("/")):
        if part in LOWER_IS_BETTER or FORMER_NAMES.get(part) in LOWER_IS_BETTER:
            return "lower"
        if part in HIGHER_IS_BETTER or part.startswith(HIGHER_IS_BETTER_PREFIXES):
            return "higher"
    return None


# Names written by earlier versions, read back under the current name (saved results stay readable).
FORMER_NAMES = {"fid_cxr": FID, "kid_cxr": KID}

# The parts of a results key an experiment writes (`<section>/<metric>[/<finding>]`, evaluation/protocol.py):
# the protocol's sections, and the metrics that are no section of their own.
SECTIONS = ("probe", "test_prompts", "fidelity", "retrieval")
METRICS = (FID, KID, FID_INCEPTION, MS_SSIM, *CONDITIONED, *CLASSIFICATION, "guidance", *FORMER_NAMES)
METRIC_PREFIXES = ("t2i_recall@", "t2i_recall_chance@", "i2i_precision@")


def unknown_parts(key: str, findings: list[str]) -> list[str]:
    """The parts of the results key `key` that are neither a section, a metric nor one of `findings` (a
    misspelled name, which no result would hold)."""
    return [
        part
        for part in key.split("/")
        if part not in SECTIONS and part not in METRICS and part not in findings
        and not part.startswith(METRIC_PREFIXES)
    ]  # fmt: skip


def on_real_images(metrics: dict[str, float]) -> dict[str, float]:
    """`conditioned_classification` keys (`cond_auroc[/<f>]`, ...) renamed for real labelled images (`auroc[/<f>]`)."""
    out = {}
    for key, value in metrics.items():
        head, slash, finding = key.partition("/")
        out[_ON_REAL.get(head, head) + slash + finding] = value
    return out


def current_names(saved: dict) -> dict:
    """A saved metrics dict (nested dicts too) with names of earlier versions replaced by the current ones."""
    return {
        FORMER_NAMES.get(key, key): current_names(value) if isinstance(value, dict) else value
        for key, value in saved.items()
    }
