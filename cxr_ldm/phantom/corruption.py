"""Faults that real MIMIC-CXR downloads have, injected on purpose so loaders are tested against them.

Each corrupted study gets exactly one fault; kinds are spread evenly. The manifest lists every fault so a
test knows what a robust loader must skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxr_ldm.phantom.layout import StudyPlan

FAULT_KINDS = (
    "truncated_jpeg",  # image cut off mid-stream
    "zero_byte_jpeg",  # empty file
    "missing_image",  # listed in the metadata, absent on disk
    "missing_report",  # study without its .txt
    "undecodable_report",  # report with bytes that are not UTF-8
    "bad_view",  # metadata row whose ViewPosition is blank or not a known view (value: dicom_id)
)
BAD_VIEW_VALUES = ("", "UNKNOWN")
UNDECODABLE = b"\xff\xfe\xc3\x28\xa0\xa1"


def plan_faults(plans: list[StudyPlan], fraction: float, seed: int) -> dict[str, list[tuple[int, int]]]:
    """kind -> [(study index, image index)]: `fraction` of studies, at least one per kind when > 0."""
    if fraction <= 0:
        return {k: [] for k in FAULT_KINDS}
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    n = min(len(plans), max(len(FAULT_KINDS), round(fraction * len(plans))))
    chosen = rng.permutation(len(plans))[:n]
    out: dict[str, list[tuple[int, int]]] = {k: [] for k in FAULT_KINDS}
    for i, study_idx in enumerate(sorted(int(c) for c in chosen)):
        kind = FAULT_KINDS[i % len(FAULT_KINDS)]
        image_idx = int(rng.integers(len(plans[study_idx].images)))
        out[kind].append((study_idx, image_idx))
    return out


def apply_faults(
    root: Path, plans: list[StudyPlan], faults: dict[str, list[tuple[int, int]]], metadata: pd.DataFrame
) -> tuple[dict[str, list[str]], pd.DataFrame]:
    """Damage the written tree; returns the manifest entries and the metadata table to write."""
    listed: dict[str, list[str]] = {k: [] for k in FAULT_KINDS}
    metadata = metadata.copy()
    metadata["ViewPosition"] = metadata["ViewPosition"].astype(object)
    for kind, targets in faults.items():
        for j, (s_idx, i_idx) in enumerate(targets):
            plan = plans[s_idx]
            image = plan.images[i_idx]
            img_rel = plan.image_path(image)
            img_path = root / img_rel
            rep_path = root / plan.report_path
            if kind == "truncated_jpeg":
                data = img_path.read_bytes()
                img_path.write_bytes(data[: max(1, len(data) // 3)])
                listed[kind].append(img_rel)
            elif kind == "zero_byte_jpeg":
                img_path.write_bytes(b"")
                listed[kind].append(img_rel)
            elif kind == "missing_image":
                img_path.unlink()
                listed[kind].append(img_rel)
            elif kind == "missing_report":
                rep_path.unlink()
                listed[kind].append(plan.report_path)
            elif kind == "undecodable_report":
                data = rep_path.read_bytes()
                cut = len(data) // 2
                rep_path.write_bytes(data[:cut] + UNDECODABLE + data[cut:])
                listed[kind].append(plan.report_path)
            elif kind == "bad_view":
                value = BAD_VIEW_VALUES[j % len(BAD_VIEW_VALUES)]
                metadata.loc[metadata["dicom_id"] == image.dicom_id, "ViewPosition"] = value or np.nan
                listed[kind].append(image.dicom_id)
    return {k: sorted(v) for k, v in listed.items()}, metadata
