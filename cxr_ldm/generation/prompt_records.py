"""Prompts to generate from, with their labels when known: a CSV / text file, a data split or an image set."""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.errors import ConfigError
from cxr_ldm.labels import CHEXPERT_LABELS

LOG = logging.getLogger(__name__)


@dataclass
class PromptRecord:
    """One prompt; `labels` maps finding -> 1, 0 or -1 (uncertain; NaN or missing = unknown); ids name the
    source study."""

    prompt: str
    labels: dict[str, float] = field(default_factory=dict)
    study_id: str = ""
    dicom_id: str = ""


def _labels_of(row: pd.Series) -> dict[str, float]:
    out = {}
    for name in CHEXPERT_LABELS:
        if name in row and not pd.isna(row[name]) and str(row[name]).strip() != "":
            try:
                out[name] = float(row[name])
            except ValueError:
                out[name] = math.nan
            if out[name] not in (1.0, 0.0, -1.0):
                raise ConfigError(
                    f"--prompts: column {name!r} has {row[name]!r}; labels are 1, 0, -1 (uncertain) or empty"
                )
    return out


PROMPT_COLUMNS = ("prompt", "study_id", "dicom_id", *CHEXPERT_LABELS)


def _check_columns(path: Path, columns: list[str]) -> None:
    """Refuse a column named nearly as a CheXpert label (a misspelled label would leave every prompt without
    it); say which other columns are left out."""
    unknown = [str(c) for c in columns if c not in PROMPT_COLUMNS]
    lowered = {label.lower(): label for label in CHEXPERT_LABELS}
    for column in unknown:
        near = difflib.get_close_matches(column.strip().lower(), list(lowered), n=1, cutoff=0.8)
        if near:
            raise ConfigError(
                f"--prompts {path}: column {column!r} is no CheXpert label; did you mean {lowered[near[0]]!r}? "
                f"Rename it (label columns: {list(CHEXPERT_LABELS)})"
            )
    if unknown:
        LOG.warning(
            "--prompts %s: columns %s are neither prompt, study_id, dicom_id nor a CheXpert label; left out",
            path,
            unknown,
        )


def read_prompt_file(path: str | Path) -> list[PromptRecord]:
    """A `.txt` (one prompt a line; blank lines are skipped) or `.csv` (`.csv.gz`) with a `prompt` column and
    optional CheXpert label columns; an empty `prompt` cell is an empty prompt (unconditional). A column named
    nearly as a label is refused; other columns are left out, with a warning."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--prompts {path} does not exist")
    from cxr_ldm.data.table_files import check_complete, read_table_bytes

    if path.suffix.lower() == ".txt":
        try:
            text = read_table_bytes(path).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"--prompts {path} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
            ) from None
        lines = [line.strip() for line in text.splitlines()]
        records = [PromptRecord(line) for line in lines if line]
    else:
        # A hand-written CSV may lack the final newline; a row short of fields is still caught.
        check_complete(path, require_final_newline=False)
        # An empty prompt stays empty (unconditional generation), never the text "nan".
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"--prompts {path} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
            ) from None
        except pd.errors.EmptyDataError:
            raise ConfigError(
                f"--prompts {path} is empty; give a `prompt` column and one row a prompt"
            ) from None
        except pd.errors.ParserError as error:
            raise ConfigError(f"--prompts {path} is not a readable CSV ({str(error).strip()})") from None
        if "prompt" not in frame.columns:
            raise ConfigError(
                f"--prompts {path} has no `prompt` column (columns: {list(frame.columns)}); "
                "add one, optionally with CheXpert label columns such as 'Pleural Effusion'"
            )
        _check_columns(path, list(frame.columns))
        records = [
            PromptRecord(
                str(row["prompt"]),
                _labels_of(row),
                str(row.get("study_id", "")),
                str(row.get("dicom_id", "")),
            )
            for _, row in frame.iterrows()
        ]
    if not records:
        raise ConfigError(f"--prompts {path} has no prompts")
    return records


def prompts_from_datamodule(datamodule, split: str = "test") -> list[PromptRecord]:
    """Every image of a split of a MimicCxrDataModule (after `setup`), with its prompt and labels."""
    datamodule.setup()
    if split not in getattr(datamodule, "datasets", {}):
        raise ConfigError(f"--split {split}: the data module has splits {sorted(datamodule.datasets)}")
    data = datamodule.datasets[split]
    if len(data.prompts) == 0:
        raise ConfigError(
            f"--split {split}: the data module's {split} split holds no image after its filters and limits "
            "(see them with `python -m cxr_ldm prepare`): choose another --split or loosen its data options"
        )
    records = []
    for i, prompt in enumerate(data.prompts):
        values = data.labels[i].tolist()
        labels = {n: v for n, v in zip(CHEXPERT_LABELS, values, strict=True) if not math.isnan(v)}
        records.append(PromptRecord(prompt, labels, str(data.study_ids[i]), str(data.dicom_ids[i])))
    return records


def prompt_records(images: ImageSet) -> list[PromptRecord]:
    """The prompts of an image set with their known labels (NaN left out) and source ids: drawing from these
    asks a model for the same images again."""
    records = []
    for prompt, values, source in zip(images.prompts, images.labels.tolist(), images.ids, strict=True):
        labels = {n: v for n, v in zip(CHEXPERT_LABELS, values, strict=True) if not math.isnan(v)}
        records.append(PromptRecord(prompt, labels, "", source))
    return records
