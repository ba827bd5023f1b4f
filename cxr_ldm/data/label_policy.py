"""Turn the raw CheXpert/NegBio values (1 positive, 0 negative, -1 uncertain, blank) into training labels."""

from __future__ import annotations

from typing import Literal

import numpy as np

from cxr_ldm.errors import ConfigError

UncertainPolicy = Literal["zero", "one", "ignore"]
BlankPolicy = Literal["zero", "ignore"]
UNCERTAIN_POLICIES: tuple[str, ...] = ("zero", "one", "ignore")
BLANK_POLICIES: tuple[str, ...] = ("zero", "ignore")

_VALUES = {"zero": 0.0, "one": 1.0, "ignore": float("nan")}


def apply_label_policy(
    raw: np.ndarray, uncertain: UncertainPolicy = "zero", blank: BlankPolicy = "zero"
) -> np.ndarray:
    """Map raw values to float32: uncertain (-1) and blank (NaN) by policy; "ignore" gives NaN
    so a loss can mask it."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise ConfigError(f"uncertain_policy must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    if blank not in BLANK_POLICIES:
        raise ConfigError(f"blank_policy must be one of {BLANK_POLICIES}, got {blank!r}")
    raw = np.asarray(raw, dtype=np.float32)
    out = raw.copy()
    out[np.isnan(raw)] = _VALUES[blank]
    out[raw == -1.0] = _VALUES[uncertain]
    return out
