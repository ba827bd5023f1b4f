"""The networks that judge generated chest X-rays: the CXR classifier (findings, CXR FID features) and the
image-text retriever. LightningModules trained with `fit` like the generator (configs/classifier/,
configs/retriever/)."""

from cxr_ldm.evaluation.evaluators.cxr_classifier import CxrClassifier
from cxr_ldm.evaluation.evaluators.image_text_retriever import ImageTextRetriever

__all__ = ["CxrClassifier", "ImageTextRetriever"]
