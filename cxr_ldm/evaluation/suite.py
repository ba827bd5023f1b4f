"""The whole evaluation of one generated set: every metric that the given evaluators allow."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.evaluation.metrics.conditioned_classification import conditioned_classification
from cxr_ldm.evaluation.metrics.diversity import ms_ssim_diversity
from cxr_ldm.evaluation.metrics.features import batched
from cxr_ldm.evaluation.metrics.fid import fid_from_features, fid_inception, kid_from_features
from cxr_ldm.evaluation.metrics.image_retrieval import i2i_precision_at_k
from cxr_ldm.evaluation.metrics.memorization import (
    distance_summary,
    memorization_grid,
    memorization_side,
    nearest_feature_neighbours,
    nearest_pixel_neighbours,
    pixel_memorization,
)
from cxr_ldm.evaluation.metrics.metric_names import CONDITIONED, FID, KID
from cxr_ldm.evaluation.metrics.operating_points import operating_points
from cxr_ldm.evaluation.metrics.reconstruction import reconstruct, reconstruction_metrics
from cxr_ldm.evaluation.metrics.report_agreement import report_agreement
from cxr_ldm.evaluation.metrics.results import MetricReport
from cxr_ldm.evaluation.metrics.text_retrieval import t2i_recall_at_k
from cxr_ldm.evaluation.sharding import run_sharded
from cxr_ldm.labels import HEADLINE_FINDINGS, label_columns

log = logging.getLogger("cxr_ldm.evaluation")

RETRIEVER_KEYS = ("t2i_recall@1", "t2i_recall@5", "t2i_recall@10")
REPORT_KEYS = ("report_f1", "report_bleu", "report_rougeL")
VAE_KEYS = ("vae_rmse", "vae_psnr", "vae_ssim", "vae_evaluator_agreement")


@dataclass
class EvaluationOptions:
    inception_weights: str | None = None
    memorization_threshold: float = 0.02
    vae_images: int = 64
    ks: tuple[int, ...] = (1, 5, 10)


@dataclass
class RealImages:
    """The real images an evaluation reads: `compared` (the split the generated images are compared with,
    `--split`, test by default), `train` (memorization, image retrieval, report agreement) and `validate` (the
    evaluator's operating points, chosen on them as the experiments choose theirs; None when the prompts have
    no labels and no point is used)."""

    compared: ImageSet
    train: ImageSet
    validate: ImageSet | None


def feature_jobs(generated: ImageSet, real_images: RealImages, classifier, retriever=None):
    """The per-image work of an evaluation (evaluator outputs, nearest training images), as shardable jobs."""
    device = classifier.device
    real_validate = real_images.validate
    fake, real, train = generated.pixels01(), real_images.compared.pixels01(), real_images.train.pixels01()
    side = memorization_side(fake, train)

    def probabilities(x):
        return batched(lambda b: torch.sigmoid(classifier(b)), x, device)

    def features(x):
        return batched(classifier.features, x, device)

    def nearest_train(x):
        distance, index = nearest_pixel_neighbours(x, train, side)
        return torch.stack([distance.double(), index.double()], dim=1)

    jobs = {
        "fake_probs": (probabilities, fake),
        "fake_features": (features, fake),
        "real_probs": (probabilities, real),
        "real_features": (features, real),
        "train_features": (features, train),
        "fake_pixel_nearest": (nearest_train, fake),
        "real_pixel_nearest": (nearest_train, real),
    }
    if real_validate is not None:
        jobs["validate_probs"] = (probabilities, real_validate.pixels01())
    if retriever is not None:

        def embed(x):
            return batched(retriever.encode_images, x, retriever.device)

        jobs["fake_retrieval"] = (embed, fake)
        if generated.labelled:
            jobs["train_retrieval"] = (embed, train)
    return jobs


def evaluate_generated(
    generated: ImageSet,
    real: RealImages,
    classifier,
    retriever=None,
    vae=None,
    options: EvaluationOptions | None = None,
    rank: int = 0,
    world: int = 1,
    out: str | Path | None = None,
) -> MetricReport | None:
    """Compute every metric; those whose inputs are missing are recorded as skipped with the reason. The
    evaluator's operating points are chosen on `real.validate`, never on the images compared with.

    With `world` > 1 (torch.distributed initialised, see `sharding.init_distributed`) every rank computes
    its share of the per-image work (rows rank, rank + world, ...) and rank 0 the metrics; other ranks return
    None. With `out`, the closest generated/training pairs are drawn to `out/memorization-*.png`.
    """
    jobs = feature_jobs(generated, real, classifier, retriever)
    found = run_sharded(jobs, rank, world)
    if found is None:
        return None
    return _metrics_from_features(found, generated, real, classifier, retriever, vae, options, out)


def _metrics_from_features(
    found: dict[str, torch.Tensor], generated: ImageSet, real_images: RealImages, classifier, retriever, vae,
    options: EvaluationOptions | None, out: str | Path | None,
) -> MetricReport:  # fmt: skip
    """The metrics from the merged per-image results of `feature_jobs` (on one process)."""
    options = options or EvaluationOptions()
    real_test, real_train, real_validate = real_images.compared, real_images.train, real_images.validate
    findings = classifier.findings
    report = MetricReport()
    report.info.update(
        generated=len(generated.prompts),
        real_test=len(real_test.prompts),
        real_train=len(real_train.prompts),
        real_validate=0 if real_validate is None else len(real_validate.prompts),
    )
    fake, real = generated.pixels01(), real_test.pixels01()

    # Quality: FID / KID on evaluator features, InceptionV3 FID when its weights are given.
    report.add(
        {
            FID: fid_from_features(found["real_features"], found["fake_features"]),
            KID: kid_from_features(found["real_features"], found["fake_features"]),
        }
    )
    if options.inception_weights:
        report.add({"fid_inception": fid_inception(real, fake, options.inception_weights)})
    else:
        report.skip(["fid_inception"], "no InceptionV3 weights file given (--inception-weights)")

    # Diversity between samples of one prompt.
    try:
        report.add({"ms_ssim": ms_ssim_diversity(fake, generated.prompt_index)})
    except ValueError as error:
        report.skip(["ms_ssim"], str(error))

    # Conditioned classification and image-to-image retrieval need the prompts' labels.
    real_probs = found["real_probs"]
    prompt_labels = generated.labels[:, label_columns(findings)]
    if not generated.labelled:
        report.skip(
            [*CONDITIONED, "i2i_precision@5", *REPORT_KEYS],
            "the prompts have no labels",
        )
    else:
        # chosen on the validation images: the test images' labels never move a cut
        cuts = operating_points(
            found["validate_probs"], real_validate.labels[:, label_columns(findings)], findings
        )
        report.info["thresholds"] = {finding: round(cut, 4) for finding, cut in cuts.items()}
        values, skipped = conditioned_classification(
            found["fake_probs"], prompt_labels, findings, thresholds=cuts
        )
        report.add(values)
        report.skipped.update(skipped)
        headline = label_columns([f for f in HEADLINE_FINDINGS])
        report.add(
            i2i_precision_at_k(
                found["fake_features"],
                generated.labels[:, headline],
                found["real_features"],
                real_test.labels[:, headline],
                options.ks,
            )
        )

    # Text-to-image retrieval and report agreement use the contrastive evaluator.
    if retriever is None:
        report.skip([*RETRIEVER_KEYS, *REPORT_KEYS], "no --retriever checkpoint given")
    else:
        queries = sorted(set(generated.prompts))
        with torch.no_grad():
            text = retriever.encode_texts(queries).cpu()
        images = found["fake_retrieval"]
        report.add(t2i_recall_at_k(text, queries, images, generated.prompts, options.ks))
        if "train_retrieval" in found:
            report.add(
                report_agreement(
                    images,
                    generated.prompts,
                    generated.labels,
                    found["train_retrieval"],
                    real_train.reports,
                    real_train.labels,
                )
            )

    # VAE reconstruction of real images.
    if vae is None:
        report.skip(list(VAE_KEYS), "the model has no VAE (or --no-vae)")
    else:
        originals = real[: options.vae_images]
        rebuilt = reconstruct(vae, originals)
        rebuilt_probs = batched(lambda x: torch.sigmoid(classifier(x)), rebuilt, classifier.device)
        report.add(reconstruction_metrics(originals, rebuilt, real_probs[: len(originals)], rebuilt_probs))

    # Memorization: nearest training image in pixel space and in the evaluator's feature space, with
    # held-out real images as the reference.
    pixel, pixel_index = found["fake_pixel_nearest"][:, 0].float(), found["fake_pixel_nearest"][:, 1].long()
    report.add(
        pixel_memorization(pixel, found["real_pixel_nearest"][:, 0].float(), options.memorization_threshold)
    )
    feature, feature_index = nearest_feature_neighbours(found["fake_features"], found["train_features"])
    reference, _ = nearest_feature_neighbours(found["real_features"], found["train_features"])
    report.add(distance_summary("memorization_feature", feature, reference))
    if out is not None:
        for space, distance, index in (("pixel", pixel, pixel_index), ("feature", feature, feature_index)):
            path = memorization_grid(
                fake, real_train.pixels01(), distance, index, Path(out) / f"memorization-{space}.png",
                title=f"closest to a training image ({space} space)",
            )  # fmt: skip
            report.info[f"memorization_{space}_grid"] = str(path)
    return report
