"""A small hand-written MIMIC-CXR tree (exact on-disk layout) for the data tests, and checks of it.

The phantom generator makes large clean trees; this one is tiny and deliberate: every study says which
filter should keep or drop it, so expectations stay readable.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxr_ldm.labels import CHEXPERT_LABELS

REPORT_PLAIN = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old woman with cough  // eval for pneumonia

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  ___

 FINDINGS:

 The lungs are clear without focal consolidation.  No pleural effusion or
 pneumothorax is seen.  The cardiac and mediastinal silhouettes are
 unremarkable.

 IMPRESSION:

 {impression}
"""

REPORT_FINDINGS_ONLY = """                                 FINAL REPORT
 INDICATION:  Shortness of breath.

 FINDINGS:  Moderate right pleural effusion with adjacent atelectasis.  Heart
 size is mildly enlarged.
"""

REPORT_NO_HEADERS = """                                 FINAL REPORT
 PA AND LATERAL CHEST ___

 Heart size is normal.  Lungs are clear.

 {impression}
"""


@dataclass
class Study:
    subject_id: int
    study_id: int
    images: list[tuple[str, str, str]]  # (dicom_id, ViewPosition, split)
    report: str | bytes | None  # None: no report file
    labels: dict[str, float] = field(default_factory=dict)  # missing labels are blank
    image_kind: dict[str, str] = field(default_factory=dict)  # dicom_id -> "missing" | "empty" | "truncated"


def write_jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    pixels = (128 + 60 * np.sin(x / 7.0 + seed) * np.cos(y / 9.0) + rng.normal(0, 8, (height, width))).clip(
        0, 255
    )
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(path, quality=90)


def write_tree(root: Path, studies: list[Study], size: tuple[int, int] = (40, 48)) -> Path:
    """Write images, reports and the four CSVs for `studies` under `root`."""
    meta, split, labels = [], [], []
    for n, study in enumerate(studies):
        subject = str(study.subject_id)
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        (folder / f"s{study.study_id}").mkdir(parents=True, exist_ok=True)
        if study.report is not None:
            data = study.report if isinstance(study.report, bytes) else study.report.encode()
            (folder / f"s{study.study_id}.txt").write_bytes(data)
        for k, (dicom_id, view, split_name) in enumerate(study.images):
            meta.append({"dicom_id": dicom_id, "subject_id": study.subject_id, "study_id": study.study_id,
                         "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                         "Rows": size[1], "Columns": size[0]})  # fmt: skip
            split.append({"dicom_id": dicom_id, "study_id": study.study_id, "subject_id": study.subject_id,
                          "split": split_name})  # fmt: skip
            path = folder / f"s{study.study_id}" / f"{dicom_id}.jpg"
            kind = study.image_kind.get(dicom_id)
            if kind == "missing":
                continue
            if kind == "empty":
                path.write_bytes(b"")
                continue
            write_jpeg(path, size, seed=n * 10 + k)
            if kind == "truncated":
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        labels.append({"subject_id": study.subject_id, "study_id": study.study_id,
                       **{name: study.labels.get(name, np.nan) for name in CHEXPERT_LABELS}})  # fmt: skip
    for name, rows in (("metadata", meta), ("split", split), ("chexpert", labels), ("negbio", labels)):
        with gzip.open(root / f"mimic-cxr-2.0.0-{name}.csv.gz", "wt") as handle:
            pd.DataFrame(rows).to_csv(handle, index=False)
    return root


def dicom(n: int) -> str:
    return f"{n:08x}-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd"


def small_studies() -> list[Study]:
    """Twelve studies; the comment on each says what should happen to it with default options."""
    s = []
    # 0-3: normal, kept (PA + lateral each), train.
    for i in range(4):
        s.append(Study(10000000 + i, 50000000 + i, [(dicom(2 * i), "PA", "train"), (dicom(2 * i + 1), "LATERAL", "train")],
                       REPORT_PLAIN.format(impression="No acute cardiopulmonary process."), {"No Finding": 1.0}))  # fmt: skip
    # 4: effusion, uncertain edema, validate.
    s.append(Study(11000004, 50000004, [(dicom(8), "PA", "validate"), (dicom(9), "LL", "validate")],
                   REPORT_PLAIN.format(impression="Small left pleural effusion."),
                   {"Pleural Effusion": 1.0, "Edema": -1.0, "Cardiomegaly": 0.0}))  # fmt: skip
    # 5: AP only, test.
    s.append(Study(12000005, 50000005, [(dicom(10), "AP", "test")],
                   REPORT_PLAIN.format(impression="Cardiomegaly."), {"Cardiomegaly": 1.0}))  # fmt: skip
    # 6: impression too long (> 77 chars).
    s.append(Study(13000006, 50000006, [(dicom(11), "PA", "train")],
                   REPORT_PLAIN.format(impression="Interval increase in the size of a moderate right pleural effusion "
                                       "with adjacent compressive atelectasis."),
                   {"Pleural Effusion": 1.0, "Atelectasis": 1.0}))  # fmt: skip
    # 7: impression too short (< 7 chars).
    s.append(Study(14000007, 50000007, [(dicom(12), "PA", "train")], REPORT_PLAIN.format(impression="Clear."),
                   {"No Finding": 1.0}))  # fmt: skip
    # 8: findings only (no impression): dropped for impression, kept for impression_or_findings? too long.
    s.append(Study(15000008, 50000008, [(dicom(13), "PA", "train")], REPORT_FINDINGS_ONLY,
                   {"Pleural Effusion": 1.0, "Cardiomegaly": 1.0}))  # fmt: skip
    # 9: no headers at all: last paragraph.
    s.append(Study(16000009, 50000009, [(dicom(14), "PA", "train")],
                   REPORT_NO_HEADERS.format(impression="Mild pulmonary edema."), {"Edema": 1.0}))  # fmt: skip
    # 10: blank view and a swimmers view: never kept for PA.
    s.append(Study(17000010, 50000010, [(dicom(15), "", "train"), (dicom(16), "SWIMMERS", "train")],
                   REPORT_PLAIN.format(impression="No acute process."), {"No Finding": 1.0}))  # fmt: skip
    # 11: normal PA, train; a fifth normal study for the cap.
    s.append(Study(18000011, 50000011, [(dicom(17), "PA", "train")],
                   REPORT_PLAIN.format(impression="No acute cardiopulmonary process."), {"No Finding": 1.0}))  # fmt: skip
    return s


def test_tree_layout(tmp_path: Path) -> None:
    root = write_tree(tmp_path, small_studies())
    assert (root / "files/p10/p10000000/s50000000.txt").is_file()
    assert (root / f"files/p10/p10000000/s50000000/{dicom(0)}.jpg").is_file()
    meta = pd.read_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz")
    assert len(meta) == 18 and set(meta.columns) >= {"dicom_id", "subject_id", "study_id", "ViewPosition"}
