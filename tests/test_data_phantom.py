"""The data module on phantom MIMIC-CXR trees: each filter and prompt mode against counts computed here,
independently, from the CSVs and report files; the corrupt tree's faults against its manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxr_ldm.data import BadSampleError, MimicCxrDataModule
from cxr_ldm.data.mimic_index import IndexOptions, build_index
from cxr_ldm.data.report_sections import extract_section
from cxr_ldm.labels import CHEXPERT_LABELS

phantom = pytest.importorskip("cxr_ldm.phantom")
PHANTOM_VIEWS = ["PA", "AP", "LATERAL", "AP AXIAL"]  # every view the phantom draws (LL is an alias)


def _root(request: pytest.FixtureRequest, name: str, tmp_path_factory, corrupt: float) -> Path:
    """The shared conftest fixture when there is one, else a tree made here."""
    try:
        return Path(request.getfixturevalue(name))
    except pytest.FixtureLookupError:
        out = tmp_path_factory.mktemp(name)
        phantom.generate_phantom(out, 120, 64, 0, corrupt=corrupt, progress=False)
        return out


@pytest.fixture(scope="module")
def clean(request, tmp_path_factory) -> Path:
    return _root(request, "phantom_root", tmp_path_factory, 0.0)


@pytest.fixture(scope="module")
def corrupt(request, tmp_path_factory) -> Path:
    return _root(request, "corrupt_phantom_root", tmp_path_factory, 0.1)


class Truth:
    """Everything the expectations need, read with plain pandas and file reads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = pd.read_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", dtype={"dicom_id": str})
        self.split = pd.read_csv(root / "mimic-cxr-2.0.0-split.csv.gz", dtype={"dicom_id": str}).set_index(
            "dicom_id"
        )["split"]
        labels = pd.read_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz").set_index("study_id")
        self.labels = {study: row for study, row in labels[list(CHEXPERT_LABELS)].iterrows()}

    def report(self, subject: int, study: int) -> str:
        return (self.root / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}.txt").read_text()

    def kept(self, views, section="impression", lo=7, hi=77) -> dict[str, str]:
        """dicom_id -> section text for every image the default filters should keep (no cap)."""
        aliases = {"LL": "LATERAL"}
        out = {}
        for row in self.meta.itertuples():
            view = aliases.get(str(row.ViewPosition), str(row.ViewPosition))
            if view not in views:
                continue
            text = extract_section(self.report(row.subject_id, row.study_id), section)
            if text and lo <= len(text) and (hi is None or len(text) <= hi):
                out[row.dicom_id] = text
        return out


@pytest.fixture(scope="module")
def truth(clean: Path) -> Truth:
    return Truth(clean)


def _index(root: Path, **options) -> pd.DataFrame:
    return build_index(IndexOptions(root=str(root), no_finding_cap=None, **options)).frame


@pytest.mark.parametrize(
    "options",
    [
        {"views": ["PA"]},
        {"views": ["PA", "AP", "LAT"]},
        {"views": ["PA"], "text_section": "findings", "max_chars": None},
        {"views": PHANTOM_VIEWS, "text_section": "impression_or_findings", "min_chars": 20, "max_chars": 120},
    ],
)
def test_filters_match_independent_counts(clean: Path, truth: Truth, options: dict) -> None:
    views = [{"LAT": "LATERAL"}.get(v, v) for v in options["views"]]
    expected = truth.kept(
        views,
        options.get("text_section", "impression"),
        options.get("min_chars", 7),
        options.get("max_chars", 77),
    )
    frame = _index(clean, **options)
    assert len(expected) > 5
    assert set(frame["dicom_id"]) == set(expected)
    assert dict(zip(frame["dicom_id"], frame["prompt"], strict=True)) == expected  # prompt_mode=report


def test_official_split_respected(clean: Path, truth: Truth) -> None:
    frame = _index(clean, views=PHANTOM_VIEWS)
    assert (frame["split"].to_numpy() == truth.split.loc[frame["dicom_id"]].to_numpy()).all()
    assert set(frame["split"]) == {"train", "validate", "test"}


def test_label_and_template_prompts(clean: Path, truth: Truth) -> None:
    labels = _index(clean, views=PHANTOM_VIEWS, prompt_mode="labels", uncertain_policy="one")
    template = _index(
        clean,
        views=PHANTOM_VIEWS,
        prompt_mode="template",
        prompt_template="chest x-ray{ with <findings>}",
        uncertain_policy="one",
    )
    assert labels["dicom_id"].tolist() == template["dicom_id"].tolist()
    for dicom_id, study, label_prompt, template_prompt in zip(
        labels["dicom_id"], labels["study_id"], labels["prompt"], template["prompt"], strict=True
    ):
        row = truth.labels[study]
        positive = [n.lower() for n in CHEXPERT_LABELS if n != "No Finding" and row[n] in (1.0, -1.0)]
        assert label_prompt == (", ".join(positive) or "normal"), dicom_id
        words = (
            ""
            if not positive
            else positive[0]
            if len(positive) == 1
            else ", ".join(positive[:-1]) + " and " + positive[-1]
        )
        assert template_prompt == ("chest x-ray with " + words if positive else "chest x-ray"), dicom_id
        values = labels.loc[labels["dicom_id"] == dicom_id, list(CHEXPERT_LABELS)].to_numpy()[0]
        assert np.array_equal(values, np.nan_to_num(np.abs(row.to_numpy(dtype=float)), nan=0.0))


def test_no_finding_cap_is_exact_and_seeded(clean: Path) -> None:
    free = _index(clean, views=PHANTOM_VIEWS)
    normal = free[(free["No Finding"] == 1) & (free["split"] == "train")]["study_id"].unique()
    cap = len(normal) // 2
    assert cap >= 3
    picks = []
    for seed in (0, 0, 1, 2):
        frame = build_index(
            IndexOptions(root=str(clean), views=PHANTOM_VIEWS, no_finding_cap=cap, seed=seed)
        ).frame
        capped = frame[(frame["No Finding"] == 1) & (frame["split"] == "train")]
        assert capped["study_id"].nunique() == cap
        assert len(frame[frame["No Finding"] != 1]) == len(free[free["No Finding"] != 1])
        picks.append(frozenset(capped["study_id"]))
    assert picks[0] == picks[1] and len(set(picks)) > 1


def test_batches_have_the_model_contract(clean: Path, tmp_path: Path) -> None:
    datamodule = MimicCxrDataModule(
        root=str(clean), cache_dir=str(tmp_path), image_size=64, batch_size=4, num_workers=0
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["pixel_values"].shape == (4, 3, 64, 64)
    assert -1.0 <= float(batch["pixel_values"].min()) < float(batch["pixel_values"].max()) <= 1.0
    assert batch["labels"].shape == (4, 14) and len(batch["prompt"]) == 4


# --------------------------------------------------------------------------- corrupt tree
def _faults(root: Path) -> dict[str, list[str]]:
    return json.loads((root / "phantom-manifest.json").read_text())["faults"]


def test_corrupt_tree_skip_reports_every_fault(corrupt: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level("WARNING", logger="cxr_ldm.data")
    datamodule = MimicCxrDataModule(
        root=str(corrupt), cache_dir=str(tmp_path), views=PHANTOM_VIEWS, text_section="impression_or_findings",
        min_chars=0, max_chars=None, no_finding_cap=None, image_size=32, batch_size=8, num_workers=2,
    )  # fmt: skip
    datamodule.prepare_data()
    datamodule.setup("fit")
    seen = sum(len(batch["dicom_id"]) for batch in datamodule.train_dataloader())
    assert seen == len(datamodule.datasets["train"])
    datamodule.teardown("fit")
    reported = {s.path: s.reason for s in datamodule.skipped}
    faults = _faults(corrupt)
    train = set(pd.read_csv(corrupt / "mimic-cxr-2.0.0-split.csv.gz").query("split == 'train'")["dicom_id"])
    for kind, paths in faults.items():
        for rel in paths:
            if kind == "bad_view":
                value = (
                    pd.read_csv(corrupt / "mimic-cxr-2.0.0-metadata.csv.gz")
                    .set_index("dicom_id")
                    .loc[rel, "ViewPosition"]
                )
                assert rel not in set(datamodule.index["dicom_id"])
                if isinstance(
                    value, str
                ):  # "UNKNOWN"; a blank view is a normal MIMIC value, dropped by `views`
                    assert any(rel in path and "unknown ViewPosition" in r for path, r in reported.items())
                continue
            if kind == "truncated_jpeg" and Path(rel).stem not in train:
                continue  # decode errors surface only when the image is loaded; only train was iterated
            hits = [r for path, r in reported.items() if path.endswith(rel.removeprefix("files/"))]
            assert hits, f"{kind} {rel} not reported"
            assert rel.removeprefix("files/") in caplog.text


def test_corrupt_tree_raise_names_the_first_bad_file(corrupt: Path, tmp_path: Path) -> None:
    datamodule = MimicCxrDataModule(
        root=str(corrupt),
        cache_dir=str(tmp_path),
        views=PHANTOM_VIEWS,
        bad_sample_policy="raise",
        num_workers=0,
    )
    with pytest.raises(BadSampleError, match="bad_sample_policy=skip") as error:
        datamodule.prepare_data()
    names = [Path(p).name for paths in _faults(corrupt).values() for p in paths]
    assert any(name in str(error.value) for name in names)
