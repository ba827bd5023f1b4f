"""Fault injection on what the commands write and the numbers they are given: an output path that is a file, a
folder of other files given to `export`, `evaluate`'s counts and threshold out of range, an empty
metadata.csv, a checkpoint cut short. Each is one line naming the option or the file and the fix, exit 2,
before any work."""

from __future__ import annotations

import pytest
from _tiny_run import ROOT, TINY, fit_args
from test_faults import _refused

from cxr_ldm.errors import ConfigError


@pytest.fixture
def taken(tmp_path):
    """A path that is a file, given where a folder is expected."""
    path = tmp_path / "taken"
    path.write_text("a file of the user's")
    return path


def _out_commands(taken, tmp_path) -> dict[str, tuple[list[str], str]]:
    """command -> (its arguments with `taken` as the output folder, the option the message names)."""
    return {
        "evaluate": (
            ["evaluate", "--data", str(TINY), "--classifier", str(tmp_path / "c.ckpt"),
             "--generated", str(tmp_path), "--out", str(taken)],
            "--out",
        ),
        "evaluate-generated": (  # generated/ under a file
            ["evaluate", "--data", str(TINY), "--classifier", str(tmp_path / "c.ckpt"),
             "--model", str(tmp_path / "m.ckpt"), "--out", str(taken)],
            "--out",
        ),
        "prepare": (["prepare", "--data.root", str(tmp_path), "--out", str(taken)], "--out"),
        "augment": (
            ["augment", "--config", str(ROOT / "configs/augment/phantom-tiny.yaml"), "--out", str(taken)],
            "out:",
        ),
        "experiment": (
            ["experiment", "--config", str(ROOT / "configs/experiments/demo.yaml"), "--out", str(taken)],
            "out:",
        ),
        "fit": (fit_args(taken, tmp_path), "trainer.default_root_dir"),
        "fit-under-a-file": (fit_args(taken / "run", tmp_path), "trainer.default_root_dir"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "command",
    ["evaluate", "evaluate-generated", "prepare", "augment", "experiment", "fit", "fit-under-a-file"],
)
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(command, taken, tmp_path, capsys):
    """`evaluate --out FILE`, `prepare --out FILE`, `augment --out FILE`, `experiment --out FILE`, `fit
    --trainer.default_root_dir FILE` (or a folder under a file): one line naming the option, the path and the
    fix, as generate, export and phantom give; nothing is read or written first (the classifier, model and data
    root named here do not exist)."""
    args, option = _out_commands(taken, tmp_path)[command]
    _refused(args, capsys, option, str(taken), "is a file; give a folder")
    assert taken.read_text() == "a file of the user's"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-real", "0"),
        ("--max-real", "-3"),
        ("--vae-images", "-1"),
        ("--vae-images", "0"),
        ("--memorization-threshold", "5"),
        ("--memorization-threshold", "nan"),
        ("--memorization-threshold", "-0.1"),
    ],
)
def test_evaluate_refuses_counts_and_thresholds_out_of_range_when_parsing(option, value, tmp_path, capsys):
    """`--max-real 0` (an empty torch.cat), `--max-real -3` (numpy's negative dimensions), `--vae-images -1`
    (all images but one, in silence), `--memorization-threshold 5` or `nan` (the help says an RMSE in [0, 1]):
    refused by the argument parser with the option and its range."""
    args = ["evaluate", "--data", str(TINY), "--classifier", str(tmp_path / "c.ckpt"),
            "--generated", str(tmp_path), "--out", str(tmp_path / "out"), option, value]  # fmt: skip
    last = _refused(args, capsys, f"argument {option}")
    assert "at least 1" in last or "between 0 and 1" in last


@pytest.mark.parametrize("contents", ["", "\n  \n"])
def test_an_empty_metadata_csv_of_a_generated_folder_is_named_with_the_fix(contents, tmp_path):
    """A generated folder whose metadata.csv is empty (pandas' EmptyDataError before): the file and how to
    finish the folder."""
    from cxr_ldm.generation.generated_folder import METADATA, read_generated

    (tmp_path / METADATA).write_text(contents)
    with pytest.raises(ConfigError, match="is empty") as caught:
        read_generated(tmp_path)
    assert str(tmp_path / METADATA) in str(caught.value) and "python -m cxr_ldm generate --out" in str(
        caught.value
    )


@pytest.mark.parametrize("size", [20_000, 400_000])
def test_a_checkpoint_cut_short_is_called_truncated_at_any_size(size, tiny_fit, tmp_path, capsys):
    """A copy of last.ckpt cut after its first bytes fails inside the zip reader's seek (OSError, "[Errno 22]
    Invalid argument"), not as a bad archive: it is still named truncated, with the fix."""
    last = tiny_fit / "checkpoints" / "last.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(last.read_bytes()[:size])
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\n")
    _refused(["generate", "--model", str(cut), "--prompts", str(prompts), "--out", str(tmp_path / "g")],
             capsys, str(cut), "truncated", "use another one")  # fmt: skip


def test_export_refuses_a_folder_of_other_files_and_writes_nothing_into_it(tiny_fit, tmp_path, capsys):
    """`export --out DIR` where DIR holds files of the user's and no earlier export (model_index.json): the
    pipeline was merged into it. Refused, naming the folder and the fix; the folder is left as it was."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.md").write_text("mine")
    checkpoint = tiny_fit / "checkpoints" / "last.ckpt"
    _refused(["export", "--ckpt", str(checkpoint), "--out", str(folder)], capsys, str(folder),
             "no earlier export", "new or empty folder")  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == ["notes.md"]
