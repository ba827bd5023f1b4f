"""Bad input files: the error raised for them and the log that records the ones skipped.

Index-time problems (missing report, undecodable report, unknown view, missing image) and load-time problems
(an image that will not decode) go through the same two objects, so `skip` and `raise` behave alike
wherever the problem is found.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cxr_ldm.errors import ConfigError

LOGGER = logging.getLogger("cxr_ldm.data")

BadSamplePolicy = Literal["skip", "raise"]

# What to do about each kind of problem; the message always ends with the policy switch.
FIXES = {
    "image": "re-download it from MIMIC-CXR-JPG (or the DICOM release)",
    "report": "re-extract it from mimic-cxr-reports.zip (or point data.reports_root at the reports)",
    "metadata": "correct the row in the metadata CSV",
    "split": "add its row to the split CSV (or download the CSV again), or use data.split=seeded",
    "labels": "add its row to the label CSV (or download the CSV again)",
}
POLICY_HINT = "or set data.bad_sample_policy=skip to skip such files"


class BadSampleError(ConfigError):
    """An input file (image, report or metadata row) that cannot be used; the message names it and the fix."""

    def __init__(self, path: str | os.PathLike, reason: str | None = None, kind: str = "image") -> None:
        self.path = str(path)
        self.reason = reason or ""
        self.kind = kind
        if reason is None:
            # One-argument form: DataLoader workers re-raise an error as type(error)(message).
            super().__init__(self.path)
            return
        fix = FIXES.get(kind, "fix or remove it")
        super().__init__(f"bad {kind} file {self.path}: {reason}; {fix}, {POLICY_HINT}")


@dataclass(frozen=True)
class SkippedSample:
    """One skipped file: where it is, why, and at which stage it was found."""

    path: str
    reason: str
    kind: str
    stage: str  # "index" or "load"


SKIP_FIELDS = ["path", "reason", "kind", "stage"]


class SkipLog:
    """Records skipped files in memory and, when given a folder, in a per-process CSV there.

    DataLoader workers are separate processes: each appends to its own file, and `records()` reads them
    all back, so the main process can report every skip made during an epoch.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._seen: set[tuple[str, str]] = set()
        self._memory: list[SkippedSample] = []

    def __getstate__(self) -> dict:
        # A worker starts with an empty memory; its skips reach the parent through the folder.
        return {"folder": self.folder, "_seen": set(), "_memory": []}

    def record(self, sample: SkippedSample) -> None:
        """Log a skip (once per file and reason in this process) and persist it."""
        key = (sample.path, sample.reason)
        if key in self._seen:
            return
        self._seen.add(key)
        self._memory.append(sample)
        LOGGER.warning("skipped %s file %s: %s", sample.kind, sample.path, sample.reason)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.folder / f"skipped-{os.getpid()}.csv"
            new = not target.exists()
            with open(target, "a", newline="") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(SKIP_FIELDS)
                writer.writerow([sample.path, sample.reason, sample.kind, sample.stage])

    def records(self) -> list[SkippedSample]:
        """Every distinct skip recorded by this process and, through the folder, by its workers."""
        found: dict[tuple[str, str], SkippedSample] = {(s.path, s.reason): s for s in self._memory}
        if self.folder is not None and self.folder.is_dir():
            for file in sorted(self.folder.glob("skipped-*.csv")):
                with open(file, newline="") as handle:
                    for row in csv.DictReader(handle):
                        if row.get("path"):
                            sample = SkippedSample(row["path"], row["reason"], row["kind"], row["stage"])
                            found.setdefault((sample.path, sample.reason), sample)
        return list(found.values())

    def __len__(self) -> int:
        return len(self.records())


def handle_bad_sample(error: BadSampleError, policy: BadSamplePolicy, log: SkipLog, stage: str) -> None:
    """Apply the policy to one bad file: raise it, or record it as skipped."""
    if policy == "raise":
        raise error
    log.record(SkippedSample(error.path, error.reason, error.kind, stage))


def write_skipped_csv(samples: list[SkippedSample], path: str | os.PathLike) -> None:
    """Write skipped files as CSV (path, reason, kind, stage), atomically."""
    from cxr_ldm.data.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SKIP_FIELDS)
        for sample in samples:
            writer.writerow([sample.path, sample.reason, sample.kind, sample.stage])
