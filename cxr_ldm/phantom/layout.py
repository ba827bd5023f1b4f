"""Who, when and which images: MIMIC-CXR style ids, study plans, patient-disjoint splits, and the CSV files.

Every table mirrors a file of MIMIC-CXR-JPG 2.0.0 column for column, so code written against the phantom
reads the real download unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_ldm.labels import CHEXPERT_LABELS
from cxr_ldm.phantom.anatomy import Anatomy, sample_anatomy
from cxr_ldm.phantom.findings import PatientHistory, StudyFindings, sample_history

METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
LABEL_COLUMNS = ("subject_id", "study_id", *CHEXPERT_LABELS)

METADATA_FILE = "mimic-cxr-2.0.0-metadata.csv.gz"
CHEXPERT_FILE = "mimic-cxr-2.0.0-chexpert.csv.gz"
NEGBIO_FILE = "mimic-cxr-2.0.0-negbio.csv.gz"
SPLIT_FILE = "mimic-cxr-2.0.0-split.csv.gz"

VIEW_CODE = {
    "PA": "postero-anterior",
    "AP": "antero-posterior",
    "LATERAL": "lateral",
    "LL": "left lateral",
    "AP AXIAL": "antero-posterior",
}
# (views, procedure, probability); AP-only studies are the portable ICU films
VIEW_SETS = (
    (("PA", "LATERAL"), "CHEST (PA AND LAT)", 0.50),
    (("AP",), "CHEST (PORTABLE AP)", 0.33),
    (("PA", "LL"), "CHEST (PA AND LAT)", 0.04),
    (("PA",), "CHEST (SINGLE VIEW)", 0.03),
    (("AP", "LATERAL"), "CHEST (PA AND LAT)", 0.04),
    (("PA", "LATERAL", "LATERAL"), "CHEST (PRE-OP PA & LAT)", 0.02),
    (("AP", "AP"), "CHEST (PORTABLE AP)", 0.02),
    (("LATERAL",), "CHEST (SINGLE VIEW)", 0.01),
    (("AP AXIAL",), "CHEST (SINGLE VIEW)", 0.01),
)
# rows / columns of the real images: portrait detector for PA and lateral, either way for portable AP
ASPECT = {
    "PA": (1.17, 1.23),
    "LATERAL": (1.17, 1.23),
    "LL": (1.17, 1.23),
    "AP": (0.82, 1.25),
    "AP AXIAL": (0.9, 1.2),
}
SPLITS = ("train", "validate", "test")


@dataclass
class ImagePlan:
    dicom_id: str
    view: str
    rows: int
    columns: int
    seed: int
    orientation: str


@dataclass
class StudyPlan:
    """Everything needed to write one study; built up front so the drawing can run in any order."""

    subject_id: int
    study_id: int
    split: str
    date: int
    time: float
    procedure: str
    images: list[ImagePlan]
    anatomy: Anatomy
    history: PatientHistory
    seed: int
    findings: StudyFindings = field(default_factory=StudyFindings)
    chexpert: dict[str, float] = field(default_factory=dict)
    negbio: dict[str, float] = field(default_factory=dict)
    report: str = ""

    @property
    def folder(self) -> str:
        """Patient folder relative to the dataset root, e.g. files/p10/p10000032."""
        sid = str(self.subject_id)
        return f"files/p{sid[:2]}/p{sid}"

    @property
    def report_path(self) -> str:
        return f"{self.folder}/s{self.study_id}.txt"

    def image_path(self, image: ImagePlan) -> str:
        return f"{self.folder}/s{self.study_id}/{image.dicom_id}.jpg"

    @property
    def portable(self) -> bool:
        return any(i.view.startswith("AP") for i in self.images)


def dicom_uid(rng: np.random.Generator) -> str:
    """An id shaped like MIMIC's dicom_id: five groups of eight hex digits."""
    return "-".join(f"{int(v):08x}" for v in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def _unique_ids(rng: np.random.Generator, n: int, base: int) -> list[int]:
    ids = rng.choice(9_999_999, size=n, replace=False) + base
    return [int(v) for v in ids]


def plan_studies(
    studies: int,
    size: int,
    seed: int,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> list[StudyPlan]:
    """Patients with 1-6 studies each, each study with one to three images, splits assigned per patient."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    counts: list[int] = []
    while sum(counts) < studies:
        counts.append(int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.38, 0.24, 0.15, 0.1, 0.07, 0.06])))
    counts[-1] -= sum(counts) - studies
    subjects = sorted(_unique_ids(rng, len(counts), 10_000_000))
    order = rng.permutation(len(counts))
    study_ids = _unique_ids(rng, studies, 50_000_000)
    split_of = {}
    cut1 = round(split_fractions[0] * len(counts))
    cut2 = cut1 + round(split_fractions[1] * len(counts))
    for rank, idx in enumerate(order):
        split_of[idx] = SPLITS[0] if rank < cut1 else SPLITS[1] if rank < cut2 else SPLITS[2]
    view_probs = np.array([p for _, _, p in VIEW_SETS])
    view_probs = view_probs / view_probs.sum()
    plans: list[StudyPlan] = []
    k = 0
    for p_idx, (subject, n_studies) in enumerate(zip(subjects, counts, strict=True)):
        anatomy = sample_anatomy(rng)
        history = sample_history(rng)
        date = (
            int(rng.integers(2110, 2200)) * 10_000 + int(rng.integers(1, 13)) * 100 + int(rng.integers(1, 29))
        )
        day = pd.Timestamp(str(date))
        for _ in range(n_studies):
            day = day + pd.Timedelta(days=int(rng.integers(0, 400)))
            views, procedure, _ = VIEW_SETS[int(rng.choice(len(VIEW_SETS), p=view_probs))]
            hh, mm, ss = int(rng.integers(0, 24)), int(rng.integers(0, 60)), float(rng.uniform(0, 60))
            time = (
                float(f"{hh:02d}{mm:02d}{ss:06.3f}")
                if rng.random() < 0.8
                else float(f"{hh:02d}{mm:02d}{int(ss):02d}")
            )
            images = []
            for view in views:
                lo, hi = ASPECT[view]
                aspect = float(rng.uniform(lo, hi))
                orientation = (
                    "Erect" if not view.startswith("AP") else str(rng.choice(["Erect", "Recumbent", ""]))
                )
                images.append(
                    ImagePlan(
                        dicom_id=dicom_uid(rng),
                        view=view,
                        rows=max(8, round(size * aspect)),
                        columns=int(size),
                        seed=int(rng.integers(0, 2**63 - 1)),
                        orientation=orientation,
                    )
                )
            plans.append(
                StudyPlan(
                    subject_id=subject,
                    study_id=study_ids[k],
                    split=split_of[p_idx],
                    date=int(day.strftime("%Y%m%d")),
                    time=time,
                    procedure=procedure,
                    images=images,
                    anatomy=anatomy,
                    history=history,
                    seed=int(rng.integers(0, 2**63 - 1)),
                )
            )
            k += 1
    return plans


def metadata_table(plans: list[StudyPlan]) -> pd.DataFrame:
    rows = []
    for p in plans:
        for im in p.images:
            rows.append(
                {
                    "dicom_id": im.dicom_id,
                    "subject_id": p.subject_id,
                    "study_id": p.study_id,
                    "PerformedProcedureStepDescription": p.procedure,
                    "ViewPosition": im.view,
                    "Rows": im.rows,
                    "Columns": im.columns,
                    "StudyDate": p.date,
                    "StudyTime": p.time,
                    "ProcedureCodeSequence_CodeMeaning": p.procedure,
                    "ViewCodeSequence_CodeMeaning": VIEW_CODE.get(im.view, ""),
                    "PatientOrientationCodeSequence_CodeMeaning": im.orientation,
                }
            )
    return pd.DataFrame(rows, columns=list(METADATA_COLUMNS))


def split_table(plans: list[StudyPlan]) -> pd.DataFrame:
    rows = [
        {"dicom_id": im.dicom_id, "study_id": p.study_id, "subject_id": p.subject_id, "split": p.split}
        for p in plans
        for im in p.images
    ]
    return pd.DataFrame(rows, columns=list(SPLIT_COLUMNS))


def label_table(plans: list[StudyPlan], which: str) -> pd.DataFrame:
    """chexpert or negbio labels, one row per study sorted like the real file."""
    rows = []
    for p in plans:
        labels = p.chexpert if which == "chexpert" else p.negbio
        rows.append({"subject_id": p.subject_id, "study_id": p.study_id, **labels})
    df = pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
    return df.sort_values(["subject_id", "study_id"]).reset_index(drop=True)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """gzip CSV with blanks for missing values, reproducible byte for byte (no timestamp in the gzip header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
