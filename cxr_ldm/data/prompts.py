"""Build the text prompt for an image: the report section, its labels as words, or a template.

Template syntax: `<findings>`, `<section>` and `<view>` are placeholders; a part in braces `{...}` is kept
only when every placeholder inside it is non-empty. The default, "a photo of a lung x-ray{ with <findings>}",
gives "a photo of a lung x-ray" for a normal study and "a photo of a lung x-ray with pleural effusion and
cardiomegaly" otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


def positive_findings(labels: np.ndarray, names: Sequence[str] = CHEXPERT_LABELS) -> list[str]:
    """Lower-case names of the labels equal to 1, leaving out "No Finding"."""
    return [
        name.lower()
        for name, value in zip(names, labels, strict=True)
        if value == 1.0 and name != "No Finding"
    ]


def label_prompt(labels: np.ndarray, names: Sequence[str] = CHEXPERT_LABELS) -> str:
    """ "pleural effusion, cardiomegaly" style prompt; "normal" when nothing is positive."""
    found = positive_findings(labels, names)
    return ", ".join(found) if found else NORMAL_WORD


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
) -> str:
    """The prompt for one image. `labels` are the values after the uncertain/blank policy."""
    if mode == "report":
        return section
    if mode == "labels":
        return label_prompt(labels, names)
    if mode == "template":
        values = {
            "findings": join_words(positive_findings(labels, names)),
            "section": section,
            "view": view.lower(),
        }
        return render_template(template, values)
    raise ConfigError(f"prompt_mode must be one of {PROMPT_MODES}, got {mode!r}")
