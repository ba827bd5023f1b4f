"""Which findings a phantom study has, with their attributes, and the CheXpert / NegBio labels they imply.

The attributes (side, size, lobe, device kinds) drive both the drawing and the report wording, so images,
reports and labels always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cxr_ldm.labels import CHEXPERT_LABELS

LOBES = {
    "right": ("right upper lobe", "right middle lobe", "right lower lobe"),
    "left": ("left upper lobe", "lingula", "left lower lobe"),
}
LOBE_ZONE = {
    "right upper lobe": "upper",
    "right middle lobe": "middle",
    "right lower lobe": "lower",
    "left upper lobe": "upper",
    "lingula": "middle",
    "left lower lobe": "lower",
}
DEVICE_KINDS = ("et_tube", "ng_tube", "central_line", "picc", "pacemaker", "sternal_wires", "chest_tube")

# Cardiothoracic ratio ranges: normal anatomy draws 0.40-0.48 (anatomy.py).
CTR_BY_SIZE = {
    "borderline": (0.51, 0.54),
    "mild": (0.56, 0.59),
    "moderate": (0.60, 0.64),
    "severe": (0.65, 0.70),
}

# Labels a plain normal report commonly negates, and how often.
NEGATION_RATES = {
    "Pneumothorax": 0.75,
    "Pleural Effusion": 0.75,
    "Consolidation": 0.6,
    "Cardiomegaly": 0.35,
    "Edema": 0.3,
    "Pneumonia": 0.2,
    "Lung Opacity": 0.1,
    "Enlarged Cardiomediastinum": 0.12,
    "Fracture": 0.04,
}


@dataclass(frozen=True)
class Finding:
    """One labelled finding of a study. label is 1.0 (present) or -1.0 (uncertain)."""

    name: str
    label: float = 1.0
    side: str = ""  # right / left / bilateral
    size: str = ""  # small / moderate / large, mild / moderate / severe, 12 mm ...
    location: str = ""  # lobe or zone
    detail: str = ""  # nodule / mass, device kinds, ratio=0.62 ...


@dataclass
class StudyFindings:
    """Findings of one study plus the absent findings its report explicitly negates."""

    findings: list[Finding] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)

    def names(self) -> set[str]:
        return {f.name for f in self.findings}

    def get(self, name: str) -> Finding | None:
        return next((f for f in self.findings if f.name == name), None)


@dataclass(frozen=True)
class PatientHistory:
    """Chronic traits that make a patient's studies resemble each other."""

    enlarged_heart: str = ""  # "", mild, moderate, severe
    pacemaker: bool = False
    sternotomy: bool = False


def sample_history(rng: np.random.Generator) -> PatientHistory:
    heart = ""
    if rng.random() < 0.18:
        heart = str(rng.choice(["mild", "moderate", "severe"], p=[0.4, 0.4, 0.2]))
    return PatientHistory(
        enlarged_heart=heart, pacemaker=bool(rng.random() < 0.05), sternotomy=bool(rng.random() < 0.06)
    )


def _side(rng: np.random.Generator, p_bilateral: float = 0.3) -> str:
    if rng.random() < p_bilateral:
        return "bilateral"
    return "right" if rng.random() < 0.5 else "left"


def _lobe(rng: np.random.Generator, side: str | None = None) -> tuple[str, str]:
    side = side or ("right" if rng.random() < 0.55 else "left")
    return side, str(rng.choice(LOBES[side], p=[0.3, 0.2, 0.5]))


def _uncertain(rng: np.random.Generator, rate: float) -> float:
    return -1.0 if rng.random() < rate else 1.0


def sample_findings(rng: np.random.Generator, history: PatientHistory, portable: bool) -> StudyFindings:
    """Findings of one study: about a third normal, the rest multi-label with some uncertain mentions."""
    out = StudyFindings()
    f = out.findings
    normal = rng.random() < (0.18 if portable else 0.36)
    devices = _sample_devices(rng, history, portable)
    for _ in range(4 if not normal else 0):
        _sample_pathology(rng, history, portable, f)
        if f:
            break
    normal = normal or not f
    if devices:
        f.append(devices)
    present = out.names()
    if normal or not (present - {"Support Devices"}):
        f.insert(0, Finding("No Finding", 1.0))
    for name, rate in NEGATION_RATES.items():
        if name not in present and rng.random() < rate:
            out.negated.append(name)
    if (
        "Pleural Effusion" in out.negated
        and "Pneumothorax" not in out.negated
        and "Pneumothorax" not in present
        and rng.random() < 0.7
    ):
        out.negated.append("Pneumothorax")
    return out


def _sample_pathology(
    rng: np.random.Generator, history: PatientHistory, portable: bool, f: list[Finding]
) -> None:
    if history.enlarged_heart and rng.random() < 0.85:
        size = history.enlarged_heart
        label = _uncertain(rng, 0.1)
        if label < 0:
            size = "borderline"
        f.append(Finding("Cardiomegaly", label, size=size, detail=f"ratio={_ctr(rng, size):.3f}"))
    elif rng.random() < 0.12:
        size = str(rng.choice(["borderline", "mild", "moderate", "severe"], p=[0.2, 0.4, 0.3, 0.1]))
        label = -1.0 if size == "borderline" else 1.0
        f.append(Finding("Cardiomegaly", label, size=size, detail=f"ratio={_ctr(rng, size):.3f}"))
    cardiac = any(x.name == "Cardiomegaly" for x in f)
    if rng.random() < (0.45 if cardiac else 0.26):
        label = _uncertain(rng, 0.12)
        size = "small" if label < 0 else str(rng.choice(["small", "moderate", "large"], p=[0.45, 0.35, 0.2]))
        f.append(Finding("Pleural Effusion", label, side=_side(rng, 0.35 if cardiac else 0.25), size=size))
    if rng.random() < (0.22 if cardiac else 0.08):
        size = str(rng.choice(["mild", "moderate", "severe"], p=[0.45, 0.4, 0.15]))
        label = _uncertain(rng, 0.2)
        f.append(Finding("Edema", label, side="bilateral", size="mild" if label < 0 else size))
    if rng.random() < 0.09:
        label = _uncertain(rng, 0.08)
        size = "small" if label < 0 else str(rng.choice(["small", "moderate", "large"], p=[0.5, 0.3, 0.2]))
        f.append(Finding("Pneumothorax", label, side="right" if rng.random() < 0.5 else "left", size=size))
    if rng.random() < 0.2:
        side, lobe = _lobe(rng)
        label = _uncertain(rng, 0.15)
        name = "Consolidation" if rng.random() < 0.35 else "Lung Opacity"
        f.append(Finding(name, label, side=side, location=lobe))
        if name == "Consolidation" and rng.random() < 0.5:
            f.append(Finding("Lung Opacity", 1.0, side=side, location=lobe))
        if rng.random() < 0.45:
            f.append(Finding("Pneumonia", _uncertain(rng, 0.6), side=side, location=lobe))
    if rng.random() < 0.2:
        side = _side(rng, 0.45)
        label = _uncertain(rng, 0.25)
        loc = "lung bases" if side == "bilateral" else f"{side} base"
        size = str(rng.choice(["minimal", "mild", "moderate"], p=[0.3, 0.5, 0.2]))
        f.append(Finding("Atelectasis", label, side=side, size=size, location=loc))
    if rng.random() < 0.06:
        side, lobe = _lobe(rng)
        kind = "mass" if rng.random() < 0.3 else "nodule"
        mm = int(rng.integers(35, 70)) if kind == "mass" else int(rng.integers(10, 28))
        f.append(
            Finding(
                "Lung Lesion", _uncertain(rng, 0.15), side=side, size=f"{mm} mm", location=lobe, detail=kind
            )
        )
    if rng.random() < (0.3 if cardiac else 0.04):
        f.append(Finding("Enlarged Cardiomediastinum", _uncertain(rng, 0.5), detail="widened mediastinum"))
    if rng.random() < 0.03:
        f.append(Finding("Fracture", _uncertain(rng, 0.3), side=_side(rng, 0.0), detail="rib"))
    if rng.random() < 0.03:
        f.append(
            Finding("Pleural Other", _uncertain(rng, 0.3), side=_side(rng, 0.1), detail="pleural thickening")
        )


def _ctr(rng: np.random.Generator, size: str) -> float:
    lo, hi = CTR_BY_SIZE[size]
    return float(rng.uniform(lo, hi))


def _sample_devices(rng: np.random.Generator, history: PatientHistory, portable: bool) -> Finding | None:
    kinds: list[str] = []
    if history.pacemaker:
        kinds.append("pacemaker")
    if history.sternotomy:
        kinds.append("sternal_wires")
    if rng.random() < (0.5 if portable else 0.06):
        pool = ["et_tube", "ng_tube", "central_line", "picc", "chest_tube"]
        weights = np.array([0.3, 0.25, 0.25, 0.15, 0.05])
        n = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        kinds += [str(k) for k in rng.choice(pool, size=n, replace=False, p=weights / weights.sum())]
    if not kinds:
        return None
    side = "right" if rng.random() < 0.7 else "left"
    return Finding("Support Devices", 1.0, side=side, detail=",".join(sorted(set(kinds))))


def chexpert_labels(study: StudyFindings) -> dict[str, float]:
    """Per-label value as the CheXpert labeler would give it: 1.0, 0.0, -1.0, or NaN (not mentioned)."""
    out = {name: float("nan") for name in CHEXPERT_LABELS}
    for name in study.negated:
        out[name] = 0.0
    for f in study.findings:
        current = out[f.name]
        if np.isnan(current) or current == 0.0 or f.label > current:
            out[f.name] = f.label
    return out


def negbio_labels(
    study: StudyFindings, chexpert: dict[str, float], rng: np.random.Generator
) -> dict[str, float]:
    """Same study through a different labeler: it resolves some uncertain mentions and misses some negations."""
    out = dict(chexpert)
    for name, value in out.items():
        if value == -1.0 and rng.random() < 0.35:
            out[name] = 1.0 if rng.random() < 0.6 else float("nan")
        elif value == 0.0 and rng.random() < 0.15:
            out[name] = float("nan")
        elif (
            np.isnan(value)
            and name == "Lung Opacity"
            and "Atelectasis" in study.names()
            and rng.random() < 0.3
        ):
            out[name] = 1.0
    return out
