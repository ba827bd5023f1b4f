"""Report agreement: a report for each generated image, by retrieval, compared with the prompt.

The "report" of a generated image is the text and labels of its nearest real training image (cosine in
an evaluator's image space). Label-level F1 over the CheXpert findings says whether it states the same
findings as the prompt; BLEU and ROUGE-L compare the words.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torchmetrics.functional.text import rouge_score
from torchmetrics.text import BLEUScore


def _words(text: str) -> str:
    """Lower-cased alphanumeric words joined by spaces: the normalisation torchmetrics' ROUGE applies."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def nearest_rows(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """Index of the nearest gallery row (cosine) for each query row."""
    return (F.normalize(query.float(), dim=-1) @ F.normalize(gallery.float(), dim=-1).t()).argmax(dim=1)


def label_f1(predicted: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Micro and macro F1 of positive findings (1) over (image, finding) pairs; NaN references left out."""
    known = ~torch.isnan(reference)
    pred = (predicted == 1) & known
    ref = (reference == 1) & known
    tp, fp, fn = (pred & ref).sum(0).float(), (pred & ~ref).sum(0).float(), (~pred & ref).sum(0).float()
    micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp(min=1)
    support = (tp + fn) > 0
    per_finding = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
    macro = per_finding[support].mean() if support.any() else torch.tensor(float("nan"))
    return {"report_f1": float(micro), "report_f1_macro": float(macro)}


def report_agreement(
    query_features: torch.Tensor,
    prompts: list[str],
    prompt_labels: torch.Tensor,
    train_features: torch.Tensor,
    train_reports: list[str],
    train_labels: torch.Tensor,
) -> dict[str, float]:
    """Retrieve a report per generated image; label F1, BLEU-4 (smoothed) and ROUGE-L against the prompt.

    ROUGE-L is torchmetrics' (word LCS F1, mean over images); a pair in which either text has no words
    scores 0.
    """
    nearest = nearest_rows(query_features, train_features).tolist()
    reports = [train_reports[i] for i in nearest]
    out = label_f1(train_labels[nearest], prompt_labels)
    bleu = BLEUScore(n_gram=4, smooth=True)
    out["report_bleu"] = float(bleu([_words(r) for r in reports], [[_words(p)] for p in prompts]))
    out["report_rougeL"] = float(rouge_score(reports, prompts, rouge_keys="rougeL")["rougeL_fmeasure"])
    return out
