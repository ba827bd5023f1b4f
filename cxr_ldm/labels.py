"""The 14 CheXpert findings that MIMIC-CXR labels every study with, in the order of its CSV columns."""

from __future__ import annotations

CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

# The findings every evaluation reports on first: visible, common, and studied by the papers.
HEADLINE_FINDINGS: tuple[str, ...] = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "No Finding")


def label_columns(findings) -> list[int]:
    """The columns of `findings` in a label matrix ordered as CHEXPERT_LABELS."""
    return [CHEXPERT_LABELS.index(f) for f in findings]
