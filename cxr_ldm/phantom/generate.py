"""Build a whole phantom MIMIC-CXR-JPG tree: plan, draw (in parallel), write tables, inject faults, manifest."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections import Counter
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from cxr_ldm.output_folders import check_output_folder
from cxr_ldm.phantom import corruption, layout
from cxr_ldm.phantom.findings import chexpert_labels, negbio_labels, sample_findings
from cxr_ldm.phantom.render import render_image
from cxr_ldm.phantom.reports import write_report

MANIFEST_FILE = "phantom-manifest.json"
IN_PROGRESS_FILE = ".phantom-in-progress"
FINDINGS_FILE = "phantom-findings.csv.gz"
FORMAT_VERSION = 1
MAX_SIZE = 4096
JPEG_QUALITY = 92
# below this many studies, worker start-up costs more than it saves
PARALLEL_MIN_STUDIES = 200


def _describe(plans: list[layout.StudyPlan], seed: int) -> dict[str, int]:
    """Sample findings, labels and report of every study (cheap, done up front, in order)."""
    styles: Counter[str] = Counter()
    seen_subjects: set[int] = set()
    for plan in plans:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 3, plan.study_id]))
        plan.findings = sample_findings(rng, plan.history, plan.portable)
        plan.chexpert = chexpert_labels(plan.findings)
        plan.negbio = negbio_labels(plan.findings, plan.chexpert, rng)
        text, style = write_report(
            plan.findings,
            plan.procedure,
            [i.view for i in plan.images],
            plan.anatomy.female,
            plan.subject_id in seen_subjects,
            rng,
        )
        seen_subjects.add(plan.subject_id)
        plan.report = text
        styles[style] += 1
    return dict(sorted(styles.items()))


def _write_study(args: tuple[str, layout.StudyPlan]) -> int:
    root, plan = args
    root_p = Path(root)
    folder = root_p / plan.folder / f"s{plan.study_id}"
    folder.mkdir(parents=True, exist_ok=True)
    for image in plan.images:
        pixels = render_image(
            plan.anatomy, plan.findings.findings, image.view, image.columns, image.rows, image.seed
        )
        Image.fromarray(pixels, mode="L").save(folder / f"{image.dicom_id}.jpg", quality=JPEG_QUALITY)
    (root_p / plan.report_path).write_text(plan.report, encoding="utf-8")
    return len(plan.images)


def _findings_table(plans: list[layout.StudyPlan]) -> pd.DataFrame:
    rows = []
    for p in plans:
        for f in p.findings.findings:
            rows.append({"subject_id": p.subject_id, "study_id": p.study_id, "split": p.split, **asdict(f)})
        for name in p.findings.negated:
            rows.append(
                {
                    "subject_id": p.subject_id,
                    "study_id": p.study_id,
                    "split": p.split,
                    "name": name,
                    "label": 0.0,
                }
            )
    cols = ["subject_id", "study_id", "split", "name", "label", "side", "size", "location", "detail"]
    return pd.DataFrame(rows, columns=cols).rename(columns={"name": "finding"}).fillna("")


def _prepare_out_dir(out: Path) -> None:
    """Make `out` ready for a new phantom: a phantom there (its manifest, or the marker of one whose making was
    cut short) is replaced; anything else is refused. The marker is written first and the manifest last, so a
    tree is complete exactly when it has a manifest."""
    check_output_folder(out, "--out", "the phantom")
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST_FILE).exists() and not (out / IN_PROGRESS_FILE).exists():
            raise FileExistsError(
                f"{out} is not empty and holds no {MANIFEST_FILE}; refusing to write into it"
            )
        (out / MANIFEST_FILE).unlink(missing_ok=True)
        shutil.rmtree(out / "files", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / IN_PROGRESS_FILE).write_text("a phantom is being made here; its manifest is written last\n")


def _default_sigterm() -> None:
    """In a pool worker: SIGTERM ends it, whatever handler the parent installed."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def generate_phantom(
    out_dir: str | os.PathLike,
    studies: int,
    size: int,
    seed: int,
    corrupt: float = 0.0,
    progress: bool = True,
    workers: int | None = None,
) -> dict:
    """Write a synthetic MIMIC-CXR-JPG tree with reports; returns the manifest (also saved as JSON).

    `size` is the width (Columns) of every image in pixels; heights follow the view's aspect ratio.
    The output depends only on (studies, size, seed, corrupt), never on `workers`.
    """
    if studies < 1:
        raise ValueError("studies must be at least 1")
    if not 16 <= size <= MAX_SIZE:
        raise ValueError(f"size must be between 16 and {MAX_SIZE} pixels")
    if not 0.0 <= corrupt <= 1.0:
        raise ValueError("corrupt must be a fraction between 0 and 1")
    out = Path(out_dir)
    _prepare_out_dir(out)
    plans = layout.plan_studies(studies, size, seed)
    styles = _describe(plans, seed)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if studies >= PARALLEL_MIN_STUDIES else 1
    jobs = [(str(out), p) for p in plans]
    bar = tqdm(total=len(plans), unit="study", desc="phantom", disable=not progress)
    if workers > 1:
        context = get_context("fork" if os.name == "posix" else "spawn")
        with context.Pool(workers, initializer=_default_sigterm) as pool:
            for _ in pool.imap_unordered(_write_study, jobs, chunksize=4):
                bar.update()
            # the workers end on their own: the pool's exit would stop them with SIGTERM, which a process
            # whose handler passes the signal over (a submitit job's) never answers, and waited for ever
            pool.close()
            pool.join()
    else:
        for job in jobs:
            _write_study(job)
            bar.update()
    bar.close()
    metadata = layout.metadata_table(plans)
    faults = corruption.plan_faults(plans, corrupt, seed)
    fault_lists, metadata = corruption.apply_faults(out, plans, faults, metadata)
    layout.write_csv(metadata, out / layout.METADATA_FILE)
    layout.write_csv(layout.label_table(plans, "chexpert"), out / layout.CHEXPERT_FILE)
    layout.write_csv(layout.label_table(plans, "negbio"), out / layout.NEGBIO_FILE)
    layout.write_csv(layout.split_table(plans), out / layout.SPLIT_FILE)
    layout.write_csv(_findings_table(plans), out / FINDINGS_FILE)
    manifest = {
        "generator": "cxr_ldm.phantom",
        "format_version": FORMAT_VERSION,
        "synthetic": True,
        "params": {"studies": studies, "size": size, "seed": seed, "corrupt": corrupt},
        "files": {
            "images": "files",
            "metadata": layout.METADATA_FILE,
            "chexpert": layout.CHEXPERT_FILE,
            "negbio": layout.NEGBIO_FILE,
            "split": layout.SPLIT_FILE,
            "findings": FINDINGS_FILE,
        },
        "counts": _counts(plans, styles),
        "faults": fault_lists,
    }
    partial = out / f".{MANIFEST_FILE}.tmp"  # written whole, then renamed: a manifest is never cut short
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    partial.replace(out / MANIFEST_FILE)
    (out / IN_PROGRESS_FILE).unlink(missing_ok=True)
    return manifest


def _counts(plans: list[layout.StudyPlan], styles: dict[str, int]) -> dict:
    views = Counter(i.view for p in plans for i in p.images)
    splits = Counter(p.split for p in plans)
    labels: dict[str, dict[str, int]] = {}
    for p in plans:
        for name, value in p.chexpert.items():
            key = "blank" if np.isnan(value) else str(value)
            labels.setdefault(name, {}).setdefault(key, 0)
            labels[name][key] += 1
    return {
        "patients": len({p.subject_id for p in plans}),
        "studies": len(plans),
        "images": sum(len(p.images) for p in plans),
        "views": dict(sorted(views.items())),
        "splits": {s: splits.get(s, 0) for s in layout.SPLITS},
        "report_styles": styles,
        "chexpert": labels,
    }
