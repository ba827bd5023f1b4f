"""Text-to-image retrieval: does a prompt retrieve its own generated image among all generated images?"""

from __future__ import annotations

import torch


def t2i_recall_at_k(
    text_embeddings: torch.Tensor,
    query_prompts: list[str],
    image_embeddings: torch.Tensor,
    image_prompts: list[str],
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@K over unit-norm embeddings: a hit when one of the K nearest images was drawn from the query's
    prompt text (identical prompt texts count as the same prompt). Also returns the chance level of
    recall@1 (the mean fraction of images that match a query).
    """
    similarity = text_embeddings.float() @ image_embeddings.float().t()
    matches = torch.tensor([[q == p for p in image_prompts] for q in query_prompts], dtype=torch.float32)
    out = {}
    for k in ks:
        top = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
        out[f"t2i_recall@{k}"] = float(matches.gather(1, top).amax(dim=1).mean())
    out["t2i_recall_chance@1"] = float(matches.mean())
    return out
