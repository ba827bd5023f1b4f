"""Build the table of training images from MIMIC-CXR's CSVs and reports: filters, labels, split, prompts.

The index is a DataFrame with one row per kept image (ids, view, split, relative image path, the 14 labels
after the uncertain/blank policy, the extracted section text and the final prompt). Every filter step
records how many images and studies it kept, so a run can say exactly where its data went.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_ldm.data.atomic import atomic_path, options_key, write_text_atomic
from cxr_ldm.data.bad_samples import (
    BadSampleError,
    BadSamplePolicy,
    SkipLog,
    SkippedSample,
    handle_bad_sample,
    write_skipped_csv,
)
from cxr_ldm.data.label_policy import apply_label_policy
from cxr_ldm.data.mimic_tables import (
    LABEL_CSVS,
    METADATA_CSV,
    SPLIT_CSV,
    SPLIT_NAMES,
    find_table,
    read_labels,
    read_metadata,
    read_split,
)
from cxr_ldm.data.prompts import make_prompt, validate_finding_words, validate_template
from cxr_ldm.data.report_sections import parse_report
from cxr_ldm.data.views import KNOWN_VIEWS, normalise_view, normalise_view_choice
from cxr_ldm.errors import ConfigError
from cxr_ldm.labels import CHEXPERT_LABELS

LOGGER = logging.getLogger("cxr_ldm.data")
INDEX_VERSION = 2  # 2: a study the label CSV does not list is skipped (version 1 kept it, all blank)
INDEX_FILE = "index.csv"
SUMMARY_FILE = "summary.json"
SKIPPED_FILE = "skipped.csv"
ID_COLUMNS = ("dicom_id", "subject_id", "study_id", "view", "split", "path")
TEXT_COLUMNS = ("section", "prompt")
INDEX_COLUMNS = (*ID_COLUMNS, *CHEXPERT_LABELS, *TEXT_COLUMNS)


@dataclass
class IndexOptions:
    """Everything that changes which images are kept and what their labels and prompts are."""

    root: str
    reports_root: str | None = None
    views: list[str] | None = field(default_factory=lambda: ["PA"])
    text_section: str = "impression"
    prompt_mode: str = "report"
    prompt_template: str = "a photo of a lung x-ray{ with <findings>}"
    finding_words: dict[str, str] | None = None
    min_chars: int = 7
    max_chars: int | None = 77
    max_tokens: int | None = None
    tokenizer: str | None = None
    no_finding_cap: int | None = 10005
    no_finding_cap_unit: str = "study"
    no_finding_cap_splits: list[str] = field(default_factory=lambda: ["train"])
    split: str = "official"
    split_ratios: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    label_source: str = "chexpert"
    uncertain_policy: str = "zero"
    blank_policy: str = "zero"
    image_suffix: str = ".jpg"
    check_images: bool = True
    max_images: dict[str, int] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.views = normalise_view_choice(self.views)
        if self.prompt_mode == "template":
            validate_template(self.prompt_template)
        self.finding_words = validate_finding_words(self.finding_words)
        if self.finding_words is not None and self.prompt_mode == "report":
            raise ConfigError(
                "data.init_args.finding_words rewrites labels and template prompts; prompt_mode report uses the "
                "report's own words: set prompt_mode to labels or template, or finding_words to null"
            )
        if self.max_tokens is not None and self.tokenizer is None:
            raise ConfigError(
                "data.init_args.max_tokens needs data.init_args.tokenizer (: a local path or hub id)"
            )
        if self.split not in ("official", "seeded"):
            raise ConfigError(f"data.init_args.split must be 'official' or 'seeded', got {self.split!r}")
        if len(self.split_ratios) != 3 or min(self.split_ratios) < 0 or sum(self.split_ratios) <= 0:
            raise ConfigError(
                f"data.init_args.split_ratios must be three non-negative numbers (train, validate, test), got {self.split_ratios}"
            )
        if self.no_finding_cap_unit not in ("study", "image"):
            raise ConfigError(
                f"data.init_args.no_finding_cap_unit must be 'study' or 'image', got {self.no_finding_cap_unit!r}"
            )
        for name in [*(self.max_images or {}), *self.no_finding_cap_splits]:
            if name not in SPLIT_NAMES:
                raise ConfigError(
                    f"data.init_args.max_images and no_finding_cap_splits: split names are {SPLIT_NAMES}, got {name!r}"
                )
        if self.min_chars < 0 or (self.max_chars is not None and self.max_chars < self.min_chars):
            raise ConfigError(
                f"data.init_args: need 0 <= min_chars <= max_chars, got {self.min_chars}, {self.max_chars}"
            )
        if self.label_source not in LABEL_CSVS:
            raise ConfigError(
                f"data.init_args.label_source must be one of {sorted(LABEL_CSVS)}, got {self.label_source!r}"
            )

    @property
    def images_dir(self) -> Path:
        return files_dir(self.root)

    @property
    def reports_dir(self) -> Path:
        return files_dir(self.reports_root or self.root)

    def key(self) -> str:
        """Hash of the options and of the CSV files' size and mtime: a new key means a new index."""
        stats = {}
        for name in (METADATA_CSV, SPLIT_CSV, LABEL_CSVS[self.label_source]):
            try:
                stat = find_table(self.root, name).stat()
                stats[name] = [stat.st_size, stat.st_mtime_ns]
            except ValueError:
                stats[name] = None
        options = asdict(self)
        if options["finding_words"] is None:  # keeps the keys of indexes built before the option existed
            del options["finding_words"]
        options["root"] = str(Path(self.root).resolve())
        options["reports_root"] = str(Path(self.reports_root).resolve()) if self.reports_root else None
        return options_key({"version": INDEX_VERSION, "options": options, "csv": stats})


def files_dir(root: str | os.PathLike) -> Path:
    """The folder holding p10..p19: `root/files` when present, else `root` itself."""
    root = Path(root)
    return root / "files" if (root / "files").is_dir() else root


def study_folder(subject_id: int, study_id: int) -> str:
    """Relative MIMIC path of a study: p1X/p<subject>/s<study>."""
    subject = str(int(subject_id))
    return f"p{subject[:2]}/p{subject}/s{int(study_id)}"


@dataclass
class BuiltIndex:
    """An index with its per-filter counts and the files skipped while building it."""

    frame: pd.DataFrame
    summary: dict
    skipped: list[SkippedSample]

    def write(self, folder: str | os.PathLike) -> None:
        """Write skipped.csv, summary.json, then index.csv (last, so its presence means complete)."""
        folder = Path(folder)
        write_skipped_csv(self.skipped, folder / SKIPPED_FILE)
        write_text_atomic(folder / SUMMARY_FILE, json.dumps(self.summary, indent=2) + "\n")
        with atomic_path(folder / INDEX_FILE) as tmp:
            self.frame.to_csv(tmp, index=False, na_rep="")


def read_index(folder: str | os.PathLike) -> BuiltIndex:
    """Read an index written by `BuiltIndex.write`."""
    folder = Path(folder)
    frame = pd.read_csv(
        folder / INDEX_FILE,
        dtype={"dicom_id": str, "view": str, "split": str, "path": str, "section": str, "prompt": str},
        keep_default_na=False,
        na_values={name: [""] for name in CHEXPERT_LABELS},
    )
    for name in CHEXPERT_LABELS:
        frame[name] = frame[name].astype(np.float32)
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    skipped = []
    if (folder / SKIPPED_FILE).is_file():
        table = pd.read_csv(folder / SKIPPED_FILE, dtype=str, keep_default_na=False)
        skipped = [SkippedSample(r.path, r.reason, r.kind, r.stage) for r in table.itertuples()]
    return BuiltIndex(frame, summary, skipped)


class _Steps:
    """Counts images and studies before and after each filter. A filter that drops the last image is
    refused with what to set (`fix`): an empty index trains and judges nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: list[dict] = []

    def record(self, step: str, before: pd.DataFrame, after: pd.DataFrame, fix: str = "") -> pd.DataFrame:
        if len(after) == 0 and len(before) > 0:
            raise ConfigError(
                f"no image of {self.root} is left after the filter {step!r} (it dropped the last "
                f"{len(before)}){': ' + fix if fix else ''}"
            )
        studies_in, studies_out = before["study_id"].nunique(), after["study_id"].nunique()
        self.rows.append(
            {
                "step": step,
                "images_in": len(before),
                "images_kept": len(after),
                "images_dropped": len(before) - len(after),
                "studies_in": int(studies_in),
                "studies_kept": int(studies_out),
                "studies_dropped": int(studies_in - studies_out),
            }
        )
        LOGGER.info("filter %-16s kept %d of %d images", step, len(after), len(before))
        return after.reset_index(drop=True)


def _read_report(path: Path) -> tuple[str | None, BadSampleError | None]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, BadSampleError(path, "report file not found", "report")
    except OSError as error:
        return None, BadSampleError(path, f"cannot read report ({error})", "report")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return None, BadSampleError(
            path, f"report is not valid UTF-8 text ({error.reason} at byte {error.start})", "report"
        )


def _check_image(path: Path) -> BadSampleError | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return BadSampleError(path, "image file not found", "image")
    except OSError as error:
        return BadSampleError(path, f"cannot stat image ({error})", "image")
    if size == 0:
        return BadSampleError(path, "image file is empty (0 bytes)", "image")
    return None


def _seeded_split(subjects: np.ndarray, ratios: list[float], seed: int) -> dict[int, str]:
    """Patient-level split: shuffle the sorted subject ids with the seed and cut by ratios."""
    unique = np.unique(subjects)
    order = np.random.default_rng(seed).permutation(len(unique))
    fractions = np.asarray(ratios, dtype=float) / float(sum(ratios))
    cuts = np.round(np.cumsum(fractions) * len(unique)).astype(int)
    names = np.empty(len(unique), dtype=object)
    start = 0
    for name, stop in zip(SPLIT_NAMES, cuts, strict=True):
        names[order[start:stop]] = name
        start = stop
    return dict(zip(unique.tolist(), names.tolist(), strict=True))


def _token_lengths(texts: list[str], tokenizer_name: str) -> np.ndarray:
    """Token counts including the tokenizer's special tokens (CLIP's 77 counts BOS and EOS)."""
    from transformers import AutoTokenizer

    from cxr_ldm.pretrained import check_source

    check_source(tokenizer_name, "data.init_args.tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    lengths = []
    for start in range(0, len(texts), 4096):
        encoded = tokenizer(texts[start : start + 4096], add_special_tokens=True, truncation=False)[
            "input_ids"
        ]
        lengths.extend(len(ids) for ids in encoded)
    return np.asarray(lengths, dtype=np.int64)


def _cap_no_finding(frame: pd.DataFrame, cap: int, unit: str, splits: list[str], seed: int) -> pd.DataFrame:
    """Keep exactly min(cap, available) "No Finding" studies (or images) per split, chosen with the seed."""
    keep = np.ones(len(frame), dtype=bool)
    is_normal = frame["_raw_no_finding"].to_numpy() == 1.0
    column = "study_id" if unit == "study" else "dicom_id"
    for split in splits:
        in_split = frame["split"].to_numpy() == split
        units = np.unique(frame.loc[in_split & is_normal, column].to_numpy())
        if len(units) <= cap:
            continue
        chosen = units[np.random.default_rng([seed, SPLIT_NAMES.index(split)]).permutation(len(units))[:cap]]
        keep &= ~(in_split & is_normal & ~frame[column].isin(chosen).to_numpy())
    return frame[keep]


def _limit(frame: pd.DataFrame, limits: dict[str, int], seed: int) -> pd.DataFrame:
    keep = np.ones(len(frame), dtype=bool)
    for split, limit in limits.items():
        rows = np.flatnonzero(frame["split"].to_numpy() == split)
        if len(rows) > limit:
            chosen = np.random.default_rng([seed, 7, SPLIT_NAMES.index(split)]).permutation(rows)[:limit]
            drop = np.setdiff1d(rows, chosen)
            keep[drop] = False
    return frame[keep]


def _histogram(values: np.ndarray, width: int) -> dict:
    if len(values) == 0:
        return {"bin_width": width, "bins": [], "counts": [], "min": None, "max": None, "mean": None}
    top = int(values.max()) // width + 1
    counts = np.bincount(values // width, minlength=top)
    return {
        "bin_width": width,
        "bins": [f"{i * width}-{(i + 1) * width - 1}" for i in range(top)],
        "counts": counts.tolist(),
        "min": int(values.min()),
        "max": int(values.max()),
        "mean": round(float(values.mean()), 2),
    }


def _summary(
    opts: IndexOptions, key: str, steps: _Steps, frame: pd.DataFrame, raw: np.ndarray, skipped: list
) -> dict:
    labels = {}
    for i, name in enumerate(CHEXPERT_LABELS):
        column = raw[:, i] if len(raw) else np.zeros(0)
        labels[name] = {
            "positive": int((column == 1).sum()),
            "negative": int((column == 0).sum()),
            "uncertain": int((column == -1).sum()),
            "blank": int(np.isnan(column).sum()),
        }
    chars = frame["prompt"].str.len().to_numpy(dtype=np.int64) if len(frame) else np.zeros(0, np.int64)
    summary = {
        "key": key,
        "options": asdict(opts),
        "filters": steps.rows,
        "totals": {
            "images": len(frame),
            "studies": int(frame["study_id"].nunique()),
            "subjects": int(frame["subject_id"].nunique()),
        },
        "splits": {
            split: {
                "images": int((frame["split"] == split).sum()),
                "studies": int(frame.loc[frame["split"] == split, "study_id"].nunique()),
            }
            for split in SPLIT_NAMES
        },
        "views": {str(k): int(v) for k, v in Counter(frame["view"]).most_common()},
        "labels_raw": labels,
        "prompt_length_chars": _histogram(chars, 10),
        "prompt_length_words": _histogram(
            frame["prompt"].str.split().str.len().to_numpy(dtype=np.int64)
            if len(frame)
            else np.zeros(0, np.int64),
            2,
        ),
        "dropped": {
            "by_filter": {row["step"]: row["images_dropped"] for row in steps.rows},
            "bad_files_by_reason": dict(Counter(s.reason.split(" (")[0] for s in skipped)),
        },
        "skipped": {
            "count": len(skipped),
            "by_reason": dict(Counter(s.reason.split(" (")[0] for s in skipped)),
            "files": [asdict(s) for s in skipped],
        },
    }
    if opts.tokenizer and len(frame):
        summary["prompt_length_tokens"] = _histogram(
            _token_lengths(frame["prompt"].tolist(), opts.tokenizer), 8
        )
    return summary


def build_index(opts: IndexOptions, policy: BadSamplePolicy = "skip", threads: int = 8) -> BuiltIndex:
    """Read the CSVs and reports, apply every filter in order, and count what each one dropped.

    Order: valid view value -> chosen views -> split -> report readable -> section present ->
    character length -> token length -> image file present -> listed in the label CSV -> "No Finding" cap ->
    per-split limits.
    Bad files (unknown view, missing or undecodable report, missing or empty image) follow `policy`.
    """
    key = opts.key()
    log = SkipLog()
    steps = _Steps(opts.root)
    metadata_path = find_table(opts.root, METADATA_CSV)
    meta = read_metadata(opts.root)
    frame = meta[["dicom_id", "subject_id", "study_id"]].copy()
    frame["view"] = [normalise_view(v) for v in meta["ViewPosition"]]

    # 1. A ViewPosition outside the known vocabulary is a broken metadata row.
    valid = frame["view"].isin(KNOWN_VIEWS).to_numpy()
    for row in np.flatnonzero(~valid):
        error = BadSampleError(
            f"{metadata_path} (dicom_id {frame['dicom_id'].iloc[row]})",
            f"unknown ViewPosition {meta['ViewPosition'].iloc[row]!r}",
            "metadata",
        )
        handle_bad_sample(error, policy, log, "index")
    frame = steps.record(
        "valid_view", frame, frame[valid], f"every ViewPosition of {metadata_path} is unknown"
    )

    # 2. Views.
    if opts.views is not None:
        found = ", ".join(sorted(view or "(blank)" for view in set(frame["view"]))) or "none"
        fix = f"no image has a view in data.views {list(opts.views)} (the metadata has {found})"
        frame = steps.record("views", frame, frame[frame["view"].isin(opts.views)], fix)

    # 3. Split.
    if opts.split == "official":
        split = read_split(opts.root)[["dicom_id", "split"]].drop_duplicates("dicom_id")
        # An image the split CSV does not list is an inconsistent download: named, and it stops `raise`.
        split_path = find_table(opts.root, SPLIT_CSV)
        for dicom_id in frame.loc[~frame["dicom_id"].isin(split["dicom_id"]), "dicom_id"]:
            error = BadSampleError(
                f"{split_path} (dicom_id {dicom_id})", "image not listed in the split CSV", "split"
            )
            handle_bad_sample(error, policy, log, "index")
        fix = f"no image is listed in {split_path}: is it the split CSV of this download?"
        frame = steps.record("split", frame, frame.merge(split, on="dicom_id", how="inner"), fix)
    else:
        mapping = _seeded_split(meta["subject_id"].to_numpy(), opts.split_ratios, opts.seed)
        frame["split"] = frame["subject_id"].map(mapping)
        frame = steps.record("split", frame, frame)

    # 4-5. Reports and the chosen section.
    studies = frame[["subject_id", "study_id"]].drop_duplicates("study_id")
    paths = [opts.reports_dir / f"{study_folder(s, t)}.txt" for s, t in studies.itertuples(index=False)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        reports = list(pool.map(_read_report, paths))
    fix = (
        f"no study's report was found under {opts.reports_dir}: set data.reports_root to the folder that holds "
        "the reports' files/p1X/p<subject>/s<study>.txt (mimic-cxr-reports.zip)"
    )
    if reports and all(text is None for text, _ in reports):
        # one line for the misplaced download, not a skipped (or raised) report per study before it
        steps.record("report", frame, frame.iloc[:0], fix)
    sections: dict[int, str] = {}
    for study_id, (text, error) in zip(studies["study_id"].tolist(), reports, strict=True):
        if error is not None:
            handle_bad_sample(error, policy, log, "index")
            continue
        sections[study_id] = parse_report(text).get(opts.text_section)
    frame = steps.record("report", frame, frame[frame["study_id"].isin(sections.keys())], fix)
    frame["section"] = frame["study_id"].map(sections).astype(str)
    fix = f"no report has a {opts.text_section} section: choose another data.text_section"
    frame = steps.record(f"section_{opts.text_section}", frame, frame[frame["section"].str.len() > 0], fix)

    # 6. Length in characters, then in tokens.
    lengths = frame["section"].str.len()
    ok = lengths >= opts.min_chars
    if opts.max_chars is not None:
        ok &= lengths <= opts.max_chars
    frame = steps.record("length_chars", frame, frame[ok], "loosen data.min_chars / data.max_chars")
    if opts.max_tokens is not None:
        unique = frame["section"].unique().tolist()
        counts = dict(zip(unique, _token_lengths(unique, opts.tokenizer).tolist(), strict=True))
        kept = frame[frame["section"].map(counts) <= opts.max_tokens]
        frame = steps.record("length_tokens", frame, kept, "raise data.max_tokens")

    # 7. Image files present and non-empty (decode errors can only show at load time).
    frame["path"] = [
        f"{study_folder(s, t)}/{d}{opts.image_suffix}"
        for s, t, d in frame[["subject_id", "study_id", "dicom_id"]].itertuples(index=False)
    ]
    if opts.check_images:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            problems = list(pool.map(_check_image, [opts.images_dir / p for p in frame["path"]]))
        for problem in problems:
            if problem is not None:
                handle_bad_sample(problem, policy, log, "index")
        fix = (
            f"no image file was found under {opts.images_dir}: data.root holds MIMIC-CXR-JPG (files/p1X/...)"
        )
        frame = steps.record("image_file", frame, frame[np.array([p is None for p in problems], bool)], fix)

    # 8. Labels: a study the label CSV does not list has no labels (blank means "not mentioned" in a listed
    # study, not "unknown"): named, and it stops `raise`.
    labels = read_labels(opts.root, opts.label_source).drop(columns=["subject_id"])
    label_path = find_table(opts.root, LABEL_CSVS[opts.label_source])
    unlisted = ~frame["study_id"].isin(labels["study_id"])
    for study_id in frame.loc[unlisted, "study_id"].unique():
        error = BadSampleError(
            f"{label_path} (study_id {study_id})", "study not listed in the label CSV", "labels"
        )
        handle_bad_sample(error, policy, log, "index")
    fix = f"no study is listed in {label_path}: is it the label CSV of this download?"
    frame = steps.record("labels", frame, frame[~unlisted.to_numpy()], fix)
    frame = frame.merge(labels, on="study_id", how="inner")
    frame["_raw_no_finding"] = frame["No Finding"]
    raw = frame[list(CHEXPERT_LABELS)].to_numpy(dtype=np.float32)

    # 9. "No Finding" cap, then per-split limits.
    if opts.no_finding_cap is not None:
        capped = _cap_no_finding(
            frame, opts.no_finding_cap, opts.no_finding_cap_unit, opts.no_finding_cap_splits, opts.seed
        )
        raw = raw[capped.index.to_numpy()]
        frame = steps.record("no_finding_cap", frame, capped)
    if opts.max_images:
        limited = _limit(frame, opts.max_images, opts.seed)
        raw = raw[limited.index.to_numpy()]
        frame = steps.record("max_images", frame, limited)

    # 10. Final labels and prompts.
    final = apply_label_policy(raw, opts.uncertain_policy, opts.blank_policy)
    frame[list(CHEXPERT_LABELS)] = final
    frame["prompt"] = [
        make_prompt(
            opts.prompt_mode, section, final[i], view, opts.prompt_template, finding_words=opts.finding_words
        )
        for i, (section, view) in enumerate(zip(frame["section"], frame["view"], strict=True))
    ]
    order = np.lexsort(
        (
            frame["dicom_id"].to_numpy(),
            frame["study_id"].to_numpy(),
            frame["split"].map(SPLIT_NAMES.index).to_numpy(),
        )
    )
    frame = frame.iloc[order].reset_index(drop=True)
    raw = raw[order]
    frame = frame[list(INDEX_COLUMNS)]
    skipped = log.records()
    return BuiltIndex(frame, _summary(opts, key, steps, frame, raw, skipped), skipped)
