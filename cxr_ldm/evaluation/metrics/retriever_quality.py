"""How good is a retriever on real images? Text-to-image recall and image-to-image precision, with chance."""

from __future__ import annotations

import torch

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.evaluation.metrics.features import batched
from cxr_ldm.evaluation.metrics.image_retrieval import i2i_precision_at_k
from cxr_ldm.evaluation.metrics.text_retrieval import t2i_recall_at_k
from cxr_ldm.labels import HEADLINE_FINDINGS, label_columns


@torch.no_grad()
def retriever_quality(retriever, test: ImageSet, gallery: ImageSet, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """The retriever on real images (the ceiling of what it can tell about generated ones).

    t2i: each distinct prompt text of `test` retrieves among all `test` images (a hit is an image whose
    prompt is that text). i2i: each `test` image retrieves among the `gallery` images (the training split)
    in the retriever's image space; precision@K of those sharing its set of positive headline findings.
    Chance levels come with both.
    """
    retriever.eval()
    queries = sorted(set(test.prompts))
    text = retriever.encode_texts(queries).cpu()
    images = batched(retriever.encode_images, test.pixels01(), retriever.device)
    gallery_images = batched(retriever.encode_images, gallery.pixels01(), retriever.device)
    headline = label_columns(HEADLINE_FINDINGS)
    return {
        **t2i_recall_at_k(text, queries, images, test.prompts, ks),
        **i2i_precision_at_k(
            images, test.labels[:, headline], gallery_images, gallery.labels[:, headline], ks
        ),
        "queries": len(queries),
        "test_images": len(test.prompts),
        "gallery_images": len(gallery.prompts),
    }
