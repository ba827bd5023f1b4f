"""Build the text prompt for an image: the report section, its labels as words, or a template.

Template syntax: `<findings>`, `<section>` and `<view>` are placeholders; a part in braces `{...}` is kept
only when every placeholder inside it is non-empty. The default, "a photo of a lung x-ray{ with <findings>}",
gives "a photo of a lung x-ray" for a normal study and "a photo of a lung x-ray with pleural effusion and
cardiomegaly" otherwise.

`finding_words` (label name -> the word written for it, "No Finding" -> the normal prompt's word) rewrites
how findings are named in labels and template prompts, e.g. one textual-inversion token per finding
(`{"Cardiomegaly": "<cardiomegaly>", "No Finding": "<normal>"}`); labels it leaves out keep their lower-case
names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from cxr_ldm.errors import ConfigError
from cxr_ldm.labels import CHEXPERT_LABELS

PromptMode = Literal["report", "labels", "template"]
PROMPT_MODES: tuple[str, ...] = ("report", "labels", "template")
DEFAULT_TEMPLATE = "a photo of a lung x-ray{ with <findings>}"
NORMAL_WORD = "normal"
PLACEHOLDERS: tuple[str, ...] = ("findings", "section", "view")

_OPTIONAL = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDER = re.compile(r"<(\w+)>")


def validate_finding_words(
    finding_words: Mapping[str, str] | None, key: str = "data.init_args.finding_words"
) -> dict[str, str] | None:
    """`finding_words` as a plain dict, or a ConfigError naming `key` for an unknown label or an empty word."""
    if finding_words is None:
        return None
    if not isinstance(finding_words, Mapping):
        raise ConfigError(f"{key} must map CheXpert label names to words, got {finding_words!r}")
    unknown = sorted(set(finding_words) - set(CHEXPERT_LABELS))
    if unknown:
        raise ConfigError(
            f"{key} names unknown labels {unknown}; use names from {list(CHEXPERT_LABELS)} "
            '("No Finding" sets the normal prompt\'s word)'
        )
    empty = sorted(
        name for name, word in finding_words.items() if not isinstance(word, str) or not word.strip()
    )
    if empty:
        raise ConfigError(f"{key}: the words of {empty} are empty; give each label a non-empty word")
    return {name: word.strip() for name, word in finding_words.items()}


def finding_word(name: str, finding_words: Mapping[str, str] | None = None) -> str:
    """How a prompt names the label `name`: its entry in `finding_words`, else its lower-case name
    ("No Finding" -> "normal")."""
    if finding_words and name in finding_words:
        return finding_words[name]
    return NORMAL_WORD if name == "No Finding" else name.lower()


def positive_findings(
    labels: np.ndarray,
    names: Sequence[str] = CHEXPERT_LABELS,
    finding_words: Mapping[str, str] | None = None,
) -> list[str]:
    """Words of the labels equal to 1 (lower-case names unless `finding_words` says), leaving out "No Finding"."""
    return [
        finding_word(name, finding_words)
        for name, value in zip(names, labels, strict=True)
        if value == 1.0 and name != "No Finding"
    ]


def label_prompt(
    labels: np.ndarray, names: Sequence[str] = CHEXPERT_LABELS, finding_words: Mapping[str, str] | None = None
) -> str:
    """ "pleural effusion, cardiomegaly" style prompt; "normal" (or the "No Finding" word) when nothing is
    positive."""
    found = positive_findings(labels, names, finding_words)
    return ", ".join(found) if found else finding_word("No Finding", finding_words)


def join_words(words: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def validate_template(template: str) -> None:
    """Reject templates that use unknown placeholders or unbalanced braces."""
    unknown = sorted(set(_PLACEHOLDER.findall(template)) - set(PLACEHOLDERS))
    if unknown:
        raise ConfigError(
            f"prompt_template uses unknown placeholders {unknown}; allowed: {list(PLACEHOLDERS)}"
        )
    stripped = _OPTIONAL.sub("", template)
    if "{" in stripped or "}" in stripped:
        raise ConfigError(f"prompt_template has unbalanced or nested braces: {template!r}")


def render_template(template: str, values: dict[str, str]) -> str:
    """Fill placeholders; drop `{...}` parts whose placeholders are empty."""

    def optional(match: re.Match) -> str:
        part = match.group(1)
        names = _PLACEHOLDER.findall(part)
        if any(not values.get(name, "") for name in names):
            return ""
        return part

    text = _OPTIONAL.sub(optional, template)
    text = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)
    return re.sub(r"\s+", " ", text).strip()


def make_prompt(
    mode: PromptMode,
    section: str,
    labels: np.ndarray,
    view: str = "",
    template: str = DEFAULT_TEMPLATE,
    names: Sequence[str] = CHEXPERT_LABELS,
    finding_words: Mapping[str, str] | None = None,
) -> str:
    """The prompt for one image. `labels` are the values after the uncertain/blank policy; `finding_words`
    renames findings in labels and template prompts (report prompts are the report's own words)."""
    if mode == "report":
        return section
    if mode == "labels":
        return label_prompt(labels, names, finding_words)
    if mode == "template":
        values = {
            "findings": join_words(positive_findings(labels, names, finding_words)),
            "section": section,
            "view": view.lower(),
        }
        return render_template(template, values)
    raise ConfigError(f"prompt_mode must be one of {PROMPT_MODES}, got {mode!r}")
