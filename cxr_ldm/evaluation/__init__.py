"""Evaluation of generated chest X-rays: the evaluators' metrics and the full suite (images come from
`cxr_ldm.generation`)."""

from cxr_ldm.evaluation.metrics.conditioned_classification import conditioned_classification
from cxr_ldm.evaluation.metrics.diversity import ms_ssim_diversity, ms_ssim_settings
from cxr_ldm.evaluation.metrics.fid import fid_classifier, fid_inception, kid_classifier
from cxr_ldm.evaluation.metrics.image_retrieval import i2i_precision_at_k
from cxr_ldm.evaluation.metrics.memorization import memorization_metrics
from cxr_ldm.evaluation.metrics.reconstruction import reconstruct, reconstruction_metrics
from cxr_ldm.evaluation.metrics.report_agreement import report_agreement
from cxr_ldm.evaluation.metrics.results import MetricReport
from cxr_ldm.evaluation.metrics.text_retrieval import t2i_recall_at_k
from cxr_ldm.evaluation.suite import EvaluationOptions, evaluate_generated

__all__ = [
    "EvaluationOptions",
    "MetricReport",
    "conditioned_classification",
    "evaluate_generated",
    "fid_classifier",
    "fid_inception",
    "i2i_precision_at_k",
    "kid_classifier",
    "memorization_metrics",
    "ms_ssim_diversity",
    "ms_ssim_settings",
    "reconstruct",
    "reconstruction_metrics",
    "report_agreement",
    "t2i_recall_at_k",
]
