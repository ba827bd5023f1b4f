"""Bad files: with `skip` they are skipped, counted and reported with path and reason; with `raise` the
first one stops the run with a BadSampleError naming it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_data_tree import REPORT_PLAIN, Study, dicom, write_tree

from cxr_ldm.data import BadSampleError, MimicCxrDataModule

GOOD = REPORT_PLAIN.format(impression="No acute cardiopulmonary process.")


def corrupt_studies() -> list[Study]:
    studies = [
        Study(10000000 + i, 50000000 + i, [(dicom(i), "PA", "train")], GOOD, {"No Finding": 1.0})
        for i in range(6)
    ]
    studies += [
        Study(11000001, 51000001, [(dicom(101), "PA", "train")], None),  # missing report
        Study(
            11000002, 51000002, [(dicom(102), "PA", "train")], b"\xff\xfe IMPRESSION: \x80\x81 clear lungs\n"
        ),
        Study(11000003, 51000003, [(dicom(103), "P A ???", "train")], GOOD),  # bad view row
        Study(11000004, 51000004, [(dicom(104), "PA", "train")], GOOD, image_kind={dicom(104): "missing"}),
        Study(11000005, 51000005, [(dicom(105), "PA", "train")], GOOD, image_kind={dicom(105): "empty"}),
        Study(11000006, 51000006, [(dicom(106), "PA", "train")], GOOD, image_kind={dicom(106): "truncated"}),
    ]
    return studies


EXPECTED = {
    "s51000001.txt": "report file not found",
    "s51000002.txt": "report is not valid UTF-8",
    f"dicom_id {dicom(103)}": "unknown ViewPosition",
    f"{dicom(104)}.jpg": "image file not found",
    f"{dicom(105)}.jpg": "image file is empty",
    f"{dicom(106)}.jpg": "cannot decode image",
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("corrupt"), corrupt_studies())


def _match(skipped) -> dict[str, str]:
    found = {}
    for name, reason in EXPECTED.items():
        hits = [s for s in skipped if s.path.endswith(name) or name in s.path]
        assert len(hits) == 1, f"{name} not reported exactly once in {skipped}"
        assert reason in hits[0].reason
        found[name] = hits[0].stage
    return found


def test_skip_completes_an_epoch_and_reports_every_file(tree: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="cxr_ldm.data")
    datamodule = MimicCxrDataModule(
        root=str(tree),
        cache_dir=str(tmp_path),
        image_size=16,
        batch_size=2,
        num_workers=2,
        no_finding_cap=None,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.datasets["train"]) == 7  # six good images + the truncated one (found at load time)
    seen = [d for batch in datamodule.train_dataloader() for d in batch["dicom_id"]]
    assert len(seen) == 7 and dicom(106) not in seen  # the bad row was replaced by the next good one
    stages = _match(datamodule.skipped)
    assert stages[f"{dicom(106)}.jpg"] == "load" and stages["s51000001.txt"] == "index"
    datamodule.teardown("fit")
    logged = caplog.text
    for name in EXPECTED:
        assert name in logged  # index-time skips logged when found, load-time ones by teardown
    skipped_csv = (datamodule.index_folder() / "skipped.csv").read_text()
    assert "s51000001.txt" in skipped_csv and "unknown ViewPosition" in skipped_csv


def test_skip_in_prepare_command(tree: Path, tmp_path: Path, capsys) -> None:
    import json

    from cxr_ldm.commands.prepare import main

    assert (
        main(["--data.root", str(tree), "--out", str(tmp_path / "out"), "--data.no_finding_cap", "null"]) == 0
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped"]["count"] == 5  # the truncated JPEG is only found when decoding
    assert "s51000002.txt" in capsys.readouterr().out


def test_raise_at_index_time_names_the_file(tree: Path, tmp_path: Path) -> None:
    datamodule = MimicCxrDataModule(
        root=str(tree), cache_dir=str(tmp_path), bad_sample_policy="raise", num_workers=0
    )
    with pytest.raises(BadSampleError, match=r"unknown ViewPosition.*bad_sample_policy=skip") as error:
        datamodule.prepare_data()
    assert dicom(103) in str(error.value) and "metadata.csv.gz" in str(error.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_raise_at_load_time_names_the_file(tmp_path: Path, workers: int) -> None:
    studies = [s for s in corrupt_studies() if s.study_id < 51000001 or s.study_id == 51000006]
    tree = write_tree(tmp_path / "tree", studies)
    datamodule = MimicCxrDataModule(
        root=str(tree), cache_dir=str(tmp_path), bad_sample_policy="raise", num_workers=workers,
        image_size=16, batch_size=7, no_finding_cap=None,
    )  # fmt: skip
    datamodule.setup("fit")
    with pytest.raises(BadSampleError, match=rf"{dicom(106)}\.jpg.*re-download it"):
        next(iter(datamodule.train_dataloader()))


def test_load_time_skips_land_under_the_run_made_by_the_first_skip(tree: Path, tmp_path: Path) -> None:
    from lightning import Trainer

    run = tmp_path / "run"
    datamodule = MimicCxrDataModule(
        root=str(tree), cache_dir=str(tmp_path / "cache"), image_size=16, batch_size=2, num_workers=2,
        no_finding_cap=None,
    )  # fmt: skip
    datamodule.trainer = Trainer(default_root_dir=str(run), logger=False, enable_progress_bar=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert not list(run.glob("load-skips-*"))  # nothing skipped yet: no folder
    for _ in datamodule.train_dataloader():
        pass
    (folder,) = run.glob("load-skips-*")  # the worker that met the truncated image made it
    assert list(folder.glob("skipped-*.csv"))
    assert _match(datamodule.skipped)[f"{dicom(106)}.jpg"] == "load"
    assert not list((tmp_path / "cache").rglob("load-skips-*"))


def test_without_a_trainer_load_time_skips_go_to_a_temporary_folder_made_by_the_first_skip(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    datamodule = MimicCxrDataModule(
        root=str(tree), cache_dir=str(tmp_path / "cache"), image_size=16, batch_size=2, num_workers=0,
        no_finding_cap=None,
    )  # fmt: skip
    datamodule.prepare_data()
    datamodule.setup("fit")
    # nothing skipped yet: no folder, so a process killed before its exit hook leaves nothing behind
    assert not list(temp.glob("cxr_ldm-load-skips-*"))
    for _ in datamodule.train_dataloader():
        pass
    (folder,) = temp.glob("cxr_ldm-load-skips-*")  # made by the skip of the truncated image
    assert list(folder.glob("skipped-*.csv"))
    assert _match(datamodule.skipped)[f"{dicom(106)}.jpg"] == "load"


def test_a_split_read_once_leaves_an_unreadable_image_out_instead_of_repeating_its_neighbour(
    phantom_root: Path, tmp_path: Path, caplog
) -> None:
    """Under `skip` the dataset hands out the next image for one that cannot be read; the real test set (FID
    ceilings, shown prompts, report checks) keeps every image once, each with its own report."""
    import shutil

    from _tiny_run import TINY

    from cxr_ldm.data.real_split import read_split
    from cxr_ldm.training.datamodule import load_datamodule_for

    root = tmp_path / "phantom"
    shutil.copytree(phantom_root, root)
    module = load_datamodule_for(TINY, {"root": str(root), "cache_dir": str(tmp_path / "cache")}, 32)
    module.setup()
    test = module.datasets["test"]
    (module.options.images_dir / test.paths[0]).write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING):
        split = read_split(module, "test")
    assert len(split) == len(test) - 1 and len(set(split.ids)) == len(split.ids)
    assert test.dicom_ids[0] not in split.ids and "left out" in caplog.text
    sections = module.index.set_index("dicom_id")["section"].astype(str)
    assert split.reports == [sections[i] for i in split.ids]


def test_a_file_mended_after_a_skip_is_read_again_by_the_index_and_the_image_cache(
    phantom_root: Path, tmp_path: Path
) -> None:
    """A missing image (skipped by the index) restored, a damaged one (skipped by the image cache)
    downloaded again: the next run reads both, as the skip's message promises."""
    import shutil

    from _tiny_run import TINY

    from cxr_ldm.training.datamodule import load_datamodule_for

    root = tmp_path / "phantom"
    shutil.copytree(phantom_root, root)
    options = {"root": str(root), "cache_dir": str(tmp_path / "cache"), "image_cache": True}
    probe = load_datamodule_for(TINY, {"root": str(root), "cache_dir": str(tmp_path / "probe")}, 32)
    test, train = probe.datasets["test"], probe.datasets["train"]
    missing, damaged = root / "files" / test.paths[0], root / "files" / train.paths[0]
    kept, good = missing.read_bytes(), damaged.read_bytes()
    missing.unlink()
    damaged.write_bytes(b"a download cut short")
    before = load_datamodule_for(TINY, options, 32)
    assert len(before.datasets["test"]) == len(test) - 1
    assert before.datasets["train"][0]["dicom_id"] != train.dicom_ids[0]  # skipped: the next image instead
    missing.write_bytes(kept)
    damaged.write_bytes(good)
    after = load_datamodule_for(TINY, options, 32)
    assert len(after.datasets["test"]) == len(test)
    assert after.datasets["train"][0]["dicom_id"] == train.dicom_ids[0] and not after.skipped


def test_prepare_composes_every_config_as_fit_does(phantom_root: Path, tmp_path: Path) -> None:
    """`prepare --config A --config B` builds the index `fit --config A --config B` trains on (a prompt style
    given as a second config included)."""
    import pandas as pd
    from _tiny_run import ROOT, TINY

    from cxr_ldm.commands.prepare import main

    def prompts(*configs: Path) -> list[str]:
        out = tmp_path / f"out{len(configs)}"
        args = [a for c in configs for a in ("--config", str(c))]
        assert (
            main(
                [
                    *args,
                    "--data.root",
                    str(phantom_root),
                    "--data.cache_dir",
                    str(tmp_path),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        return pd.read_csv(out / "index.csv", keep_default_na=False)["prompt"].tolist()

    labels = prompts(TINY, ROOT / "configs" / "prompts" / "label.yaml")
    assert labels != prompts(TINY)
    from cxr_ldm.training.datamodule import load_datamodule

    fit = load_datamodule(
        [TINY, ROOT / "configs" / "prompts" / "label.yaml"],
        root=str(phantom_root),
        cache_dir=str(tmp_path / "fit"),
    )
    assert labels == fit.build_index().frame["prompt"].tolist()
