"""The whole evaluation of one generated set: every metric that the given evaluators allow."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from cxr_ldm.evaluation.conditioned_classification import conditioned_classification
from cxr_ldm.evaluation.diversity import ms_ssim_diversity
from cxr_ldm.evaluation.features import batched
from cxr_ldm.evaluation.fid import fid_classifier, fid_inception, kid_classifier
from cxr_ldm.evaluation.generation import GeneratedSet
from cxr_ldm.evaluation.image_retrieval import i2i_precision_at_k
from cxr_ldm.evaluation.memorization import memorization_metrics
from cxr_ldm.evaluation.operating_points import operating_points
from cxr_ldm.evaluation.real_data import RealSet
from cxr_ldm.evaluation.reconstruction import reconstruct, reconstruction_metrics
from cxr_ldm.evaluation.report_agreement import report_agreement
from cxr_ldm.evaluation.results import MetricReport
from cxr_ldm.evaluation.text_retrieval import t2i_recall_at_k
from cxr_ldm.labels import CHEXPERT_LABELS, HEADLINE_FINDINGS

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


def column_indices(names) -> list[int]:
    return [CHEXPERT_LABELS.index(n) for n in names]


def evaluate_generated(
    generated: GeneratedSet,
    real_test: RealSet,
    real_train: RealSet,
    classifier,
    retriever=None,
    vae=None,
    options: EvaluationOptions | None = None,
) -> MetricReport:
    """Compute every metric; those whose inputs are missing are recorded as skipped with the reason."""
    options = options or EvaluationOptions()
    report = MetricReport()
    report.info.update(
        generated=len(generated.prompts), real_test=len(real_test.prompts), real_train=len(real_train.prompts)
    )
    device = classifier.device
    fake, real = generated.images, real_test.images

    # Quality: FID / KID on evaluator features, InceptionV3 FID when its weights are given.
    report.add(
        {"fid_xrv": fid_classifier(real, fake, classifier), "kid_xrv": kid_classifier(real, fake, classifier)}
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

    # The classifier on the real images: operating points, and decisions kept by the VAE (below).
    real_probs = batched(lambda x: torch.sigmoid(classifier(x)), real, device)

    # Conditioned classification and image-to-image retrieval need the prompts' labels.
    findings = classifier.findings
    prompt_labels = generated.labels[:, column_indices(findings)]
    if torch.isnan(generated.labels).all():
        report.skip(
            ["cond_accuracy", "cond_balanced_accuracy", "cond_auroc", "i2i_precision@5", *REPORT_KEYS],
            "the prompts have no labels",
        )
    else:
        probs = batched(lambda x: torch.sigmoid(classifier(x)), fake, device)
        cuts = operating_points(real_probs, real_test.labels[:, column_indices(findings)], findings)
        report.info["thresholds"] = {finding: round(cut, 4) for finding, cut in cuts.items()}
        values, skipped = conditioned_classification(probs, prompt_labels, findings, thresholds=cuts)
        report.add(values)
        report.skipped.update(skipped)
        headline = column_indices([f for f in HEADLINE_FINDINGS])
        fake_features = batched(classifier.features, fake, device)
        real_features = batched(classifier.features, real, device)
        report.add(
            i2i_precision_at_k(
                fake_features,
                generated.labels[:, headline],
                real_features,
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
            images = batched(retriever.encode_images, fake, retriever.device)
            report.add(t2i_recall_at_k(text, queries, images, generated.prompts, options.ks))
            if not torch.isnan(generated.labels).all():
                train_images = batched(retriever.encode_images, real_train.images, retriever.device)
                report.add(
                    report_agreement(
                        images,
                        generated.prompts,
                        generated.labels,
                        train_images,
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
        rebuilt_probs = batched(lambda x: torch.sigmoid(classifier(x)), rebuilt, device)
        report.add(reconstruction_metrics(originals, rebuilt, real_probs[: len(originals)], rebuilt_probs))

    # Memorization: nearest training image in pixel space, with held-out real images as the reference.
    report.add(memorization_metrics(fake, real_train.images, real, options.memorization_threshold))
    return report
