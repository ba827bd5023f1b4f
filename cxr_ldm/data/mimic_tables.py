"""Find and read MIMIC-CXR's CSV tables, failing early with the file and column named."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_ldm.errors import ConfigError
from cxr_ldm.labels import CHEXPERT_LABELS

LOG = logging.getLogger(__name__)

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
LABEL_CSVS = {"chexpert": "mimic-cxr-2.0.0-chexpert.csv.gz", "negbio": "mimic-cxr-2.0.0-negbio.csv.gz"}

METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
LABEL_COLUMNS = ("subject_id", "study_id", *CHEXPERT_LABELS)
SPLIT_NAMES = ("train", "validate", "test")


class MimicTableError(ConfigError):
    """A MIMIC-CXR CSV is missing, unreadable, or lacks a column; the message names the file and column."""


def find_table(root: str | os.PathLike, name: str) -> Path:
    """`root/name`, or the same name without `.gz`; raises naming the expected file when neither exists."""
    root = Path(root)
    candidates = [root / name, root / name.removesuffix(".gz")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MimicTableError(
        f"missing CSV file {candidates[0]} (or {candidates[1].name}): download it from MIMIC-CXR-JPG into data.root"
    )


def read_table(path: Path, columns: tuple[str, ...], id_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV (plain or gzip), check it is complete, the columns are there and the id columns are integers."""
    from cxr_ldm.data.table_files import TruncatedTableError, check_complete

    try:
        check_complete(path)
    except TruncatedTableError as error:
        raise MimicTableError(str(error)) from error
    try:
        frame = pd.read_csv(
            path, dtype={"dicom_id": str, "ViewPosition": str, "split": str}, keep_default_na=True
        )
    except Exception as error:
        raise MimicTableError(f"cannot read CSV file {path}: {type(error).__name__}: {error}") from error
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise MimicTableError(
            f"CSV file {path} lacks column {missing[0]!r}"
            + (f" (and {missing[1:]})" if len(missing) > 1 else "")
            + f"; it has {list(frame.columns)}"
        )
    for column in id_columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise MimicTableError(
                f"CSV file {path} column {column!r} has a non-integer value {frame[column].iloc[row]!r} "
                f"(data row {row + 1})"
            )
        frame[column] = values.astype(np.int64)
    return frame


def read_metadata(root: str | os.PathLike) -> pd.DataFrame:
    """dicom_id, subject_id, study_id, ViewPosition (+ the other metadata columns), one row per image."""
    path = find_table(root, METADATA_CSV)
    frame = read_table(path, METADATA_COLUMNS, ("subject_id", "study_id"))
    frame["dicom_id"] = frame["dicom_id"].astype(str).str.strip()
    return frame


def read_labels(root: str | os.PathLike, source: str = "chexpert") -> pd.DataFrame:
    """subject_id, study_id and the 14 label columns as float (NaN = blank), one row per study."""
    if source not in LABEL_CSVS:
        raise ValueError(f"label_source must be one of {sorted(LABEL_CSVS)}, got {source!r}")
    path = find_table(root, LABEL_CSVS[source])
    frame = read_table(path, LABEL_COLUMNS, ("subject_id", "study_id"))
    for name in CHEXPERT_LABELS:
        values = pd.to_numeric(frame[name], errors="coerce")
        if not values.isin([1.0, 0.0, -1.0]).where(values.notna(), True).all():
            raise MimicTableError(f"CSV file {path} column {name!r} has values other than 1, 0, -1 or blank")
        frame[name] = values.astype(np.float32)
    unique = frame.drop_duplicates()  # a row repeated whole says nothing new
    conflicting = unique["study_id"][unique["study_id"].duplicated()].unique()
    if len(conflicting):
        LOG.warning(
            "%s: studies with more than one row of other labels: %d (e.g. study %s); the first row of each is read",
            path, len(conflicting), conflicting[0],
        )  # fmt: skip
    return unique.drop_duplicates("study_id", keep="first")


def read_split(root: str | os.PathLike) -> pd.DataFrame:
    """dicom_id -> split in {train, validate, test}."""
    path = find_table(root, SPLIT_CSV)
    frame = read_table(path, SPLIT_COLUMNS, ("subject_id", "study_id"))
    frame["dicom_id"] = frame["dicom_id"].astype(str).str.strip()
    frame["split"] = frame["split"].astype(str).str.strip().str.lower()
    unknown = sorted(set(frame["split"]) - set(SPLIT_NAMES))
    if unknown:
        raise MimicTableError(
            f"CSV file {path} column 'split' has unknown values {unknown}; expected {SPLIT_NAMES}"
        )
    return frame
