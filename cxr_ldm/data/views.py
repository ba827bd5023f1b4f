"""View positions: the names users choose from and the normalisation of the metadata's ViewPosition."""

from __future__ import annotations

import re

from cxr_ldm.errors import ConfigError

# Short or variant spellings that mean the same projection.
VIEW_ALIASES: dict[str, str] = {
    "LAT": "LATERAL",
    "LL": "LATERAL",
    "LEFT LATERAL": "LATERAL",
    "RL": "LATERAL",
    "POSTERO-ANTERIOR": "PA",
    "POSTEROANTERIOR": "PA",
    "ANTERO-POSTERIOR": "AP",
    "ANTEROPOSTERIOR": "AP",
}

# Every ViewPosition MIMIC-CXR's metadata uses (after aliasing); "" is the blank value some rows have.
KNOWN_VIEWS: frozenset[str] = frozenset(
    {
        "PA",
        "AP",
        "LATERAL",
        "AP AXIAL",
        "PA AXIAL",
        "AP LLD",
        "AP RLD",
        "PA LLD",
        "PA RLD",
        "LAO",
        "RAO",
        "LPO",
        "RPO",
        "SWIMMERS",
        "XTABLE LATERAL",
        "",
    }
)

_SPACES = re.compile(r"\s+")


def normalise_view(value: object) -> str:
    """Upper-case, collapse whitespace and apply aliases (LL, LAT -> LATERAL); NaN/None become ""."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = _SPACES.sub(" ", str(value)).strip().upper()
    if text in {"NAN", "NONE"}:
        return ""
    return VIEW_ALIASES.get(text, text)


def normalise_view_choice(views: list[str] | None) -> list[str] | None:
    """Validate the user's `views` option; None (or ["ALL"]) keeps every view."""
    if views is None:
        return None
    chosen = [normalise_view(v) for v in views]
    if chosen == ["ALL"]:
        return None
    unknown = sorted(set(chosen) - KNOWN_VIEWS - {""})
    if unknown or not chosen:
        raise ConfigError(
            f"views must be a non-empty list of {sorted(KNOWN_VIEWS - {''})} (aliases {sorted(VIEW_ALIASES)}), "
            f"got unknown {unknown or views}"
        )
    return sorted(set(chosen), key=chosen.index)
