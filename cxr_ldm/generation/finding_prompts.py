"""One prompt per finding, written the way training wrote prompts: the controlled form of the papers' first check.

The prompt of a finding names it alone; a normal study's prompt names nothing. Each prompt carries complete
labels (its finding 1, every other 0), so the conditioned classification of its images reads directly as
"does the evaluator see the finding that was asked for, and only when it was asked for": for each finding,
its own prompt's images are the positives and every other prompt's images the negatives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cxr_ldm.data.prompts import DEFAULT_TEMPLATE, make_prompt, validate_finding_words
from cxr_ldm.errors import ConfigError
from cxr_ldm.generation.prompt_records import PromptRecord
from cxr_ldm.labels import CHEXPERT_LABELS, HEADLINE_FINDINGS


def finding_prompts(
    findings: Sequence[str] = HEADLINE_FINDINGS,
    mode: str = "labels",
    template: str = DEFAULT_TEMPLATE,
    finding_words: Mapping[str, str] | None = None,
) -> list[PromptRecord]:
    """A record per finding ("No Finding" gives the normal prompt), in the data module's `mode`, naming each
    finding as its `finding_words` say (the data module's option of the same name)."""
    if mode == "report":
        raise ConfigError(
            "finding prompts need prompt_mode labels or template: a report-mode model was trained on report "
            "text, so write one prompt per finding in a CSV (prompt column plus label columns) and pass --prompts"
        )
    unknown = [f for f in findings if f not in CHEXPERT_LABELS]
    if unknown:
        raise ConfigError(f"unknown findings {unknown}; use names from {list(CHEXPERT_LABELS)}")
    finding_words = validate_finding_words(finding_words)
    records = []
    for finding in findings:
        labels = np.zeros(len(CHEXPERT_LABELS), dtype=np.float32)
        labels[CHEXPERT_LABELS.index(finding)] = 1.0
        prompt = make_prompt(mode, "", labels, template=template, finding_words=finding_words)  # type: ignore[arg-type]
        records.append(PromptRecord(prompt, dict(zip(CHEXPERT_LABELS, labels.tolist(), strict=True))))
    return records
