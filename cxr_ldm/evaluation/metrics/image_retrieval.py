"""Image-to-image retrieval: do generated images retrieve real images with the same findings?"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def finding_sets(labels: torch.Tensor) -> list[frozenset[int]]:
    """The set of positive findings (label == 1) of each row; NaN counts as not positive."""
    return [frozenset(torch.nonzero(row == 1).flatten().tolist()) for row in labels]


def i2i_precision_at_k(
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_features: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, float]:
    """Mean precision@K of the K real images nearest (cosine) to each query sharing its findings.

    "Sharing" means the same set of positive findings among the label columns given (pass the headline
    findings' columns: {} = no headline finding positive is a set too). Also returns the chance level:
    the mean fraction of the gallery that shares a query's set.
    """
    similarity = (
        F.normalize(query_features.float(), dim=-1) @ F.normalize(gallery_features.float(), dim=-1).t()
    )
    queries, gallery = finding_sets(query_labels), finding_sets(gallery_labels)
    relevant = torch.tensor([[q == g for g in gallery] for q in queries], dtype=torch.float32)
    out = {}
    for k in ks:
        k_eff = min(k, similarity.shape[1])
        top = similarity.topk(k_eff, dim=1).indices
        out[f"i2i_precision@{k}"] = float(relevant.gather(1, top).mean())
    out["i2i_precision_chance"] = float(relevant.mean())
    return out
