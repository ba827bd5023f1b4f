"""Fault injection: each class of bad input or interruption a hostile or careless user can cause, with the
outcome promised in docs/reliability.md (a clear message, skipped and counted, or refused)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from _tiny_run import ROOT, TINY, fit_args

from cxr_ldm.__main__ import _config_error_in, main
from cxr_ldm.errors import ConfigError


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": ""},
        timeout=300,
    )


# ---------------------------------------------------------------- 4. warnings stay on
@pytest.mark.slow  # a fresh process importing the package (10 s)
def test_importing_the_package_keeps_warnings_visible():
    code = (
        "import warnings\n"
        "import cxr_ldm.models, cxr_ldm.evaluation.suite, cxr_ldm.xrv\n"
        "blanket = [f for f in warnings.filters if f[0] == 'ignore' and f[1] is None and f[2] is Warning]\n"
        "assert not blanket, warnings.filters[:3]\n"
        "warnings.warn('still shown', UserWarning)\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert "UserWarning: still shown" in result.stderr


def test_torchxrayvision_is_imported_in_one_place_only():
    offenders = []
    for folder in ("cxr_ldm", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            if path.name not in ("xrv.py", "test_faults.py") and (
                "import torchxrayvision" in text or '"torchxrayvision")' in text
            ):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# ---------------------------------------------------------------- 5. values that cannot be right
def _refused(args: list[str], capsys, *needles: str) -> str:
    """The command exits 2 with one message naming `needles`, and no traceback."""
    try:
        code = main(args)
    except SystemExit as stop:  # argparse
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    # The message is the last line; any traceback above it can only be from logging handlers that pytest's
    # capture closed between tests ("--- Logging error ---"), never from the command.
    last = err.strip().splitlines()[-1]
    assert "error:" in last and ("Traceback" not in err or "--- Logging error ---" in err), err
    for needle in needles:
        assert needle in last, err
    return last


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--model.init_args.trainable", '{"unet": {"lr": -1e-4}}'], ["trainable", "lr", ">= 0"]),
        (["--data.init_args.image_size", "33"], ["image_size 33", "downsampling factor 2"]),
        (["--data.init_args.batch_size", "0"], ["data.init_args.batch_size", ">= 1"]),
        (["--ckpt_path", "last"], ["--ckpt_path last", "checkpoints"]),
        (["--ckpt_path", "no/such.ckpt"], ["no/such.ckpt", "does not exist"]),
    ],
    ids=["negative-lr", "image-size-vs-vae", "batch-size-0", "resume-without-checkpoint", "missing-ckpt"],
)
def test_fit_refuses_bad_values_before_training(tmp_path, phantom_root, capsys, extra, needles):
    _refused(fit_args(tmp_path, phantom_root, *extra), capsys, *needles)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--per-prompt", "0"),
        ("--steps", "0"),
        ("--guidance", "-1"),
        ("--batch-size", "0"),
        ("--limit", "0"),
        ("--scheduler", "bogus"),
    ],  # fmt: skip
)
def test_generate_refuses_out_of_range_options(tmp_path, capsys, option, value):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\n")
    args = [
        "generate",
        "--model",
        str(tmp_path / "m.ckpt"),
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "o"),
    ]
    _refused([*args, option, value], capsys, option, value)
    assert not (tmp_path / "o").exists()  # refused before the folder is claimed: a corrected rerun may use it


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, phantom_root, monkeypatch):
    monkeypatch.setenv("CXR_LDM_DEBUG", "1")
    with pytest.raises(Exception) as raised:  # the argument parser may wrap it
        main(fit_args(tmp_path, phantom_root, "--data.init_args.batch_size", "0"))
    assert isinstance(_config_error_in(raised.value), ConfigError)


def test_logger_follows_default_root_dir(tmp_path, phantom_root):
    run = tmp_path / "elsewhere"
    args = [
        "fit", "--config", str(TINY), "--data.init_args.root", str(phantom_root),
        "--data.init_args.cache_dir", str(tmp_path / "cache"), "--trainer.default_root_dir", str(run),
        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
    ]  # fmt: skip
    assert main(args) == 0
    assert list(run.glob("tensorboard/version_0/events.out.tfevents.*"))


def test_configs_do_not_hard_code_the_log_folder():
    hard_coded = [
        str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml") if "save_dir:" in p.read_text()
    ]
    assert hard_coded == []


# ---------------------------------------------------------------- 3. folders remember what made them
PIPELINE = ROOT / "artifacts" / "tiny-pretrained"


def _generate(out, prompts_file, *extra: str) -> list[str]:
    return [
        "generate", "--model", str(PIPELINE), "--prompts", str(prompts_file), "--out", str(out),
        "--per-prompt", "1", "--steps", "1", "--device", "cpu", "--no-progress", *extra,
    ]  # fmt: skip


def test_generate_refuses_data_options_beside_a_prompt_file(tmp_path, capsys):
    """`--split` and `--data-root` choose what `--data-config` reads; beside `--prompts` they were left out in
    silence, and the images drawn from the file's prompts."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\n")
    _refused(_generate(tmp_path / "out", prompts, "--split", "train", "--data-root", str(tmp_path)), capsys,
             "--split, --data-root choose what --data-config reads")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_generate_refuses_a_folder_made_with_other_inputs(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\npleural effusion\n")
    out = tmp_path / "generated"
    assert main(_generate(out, prompts)) == 0
    first = (out / "images" / "000001.png").read_bytes()
    assert main(_generate(out, prompts)) == 0  # same inputs: resumes, nothing redrawn
    other = tmp_path / "other.txt"
    other.write_text("normal\ncardiomegaly\n")
    _refused(_generate(out, other), capsys, "prompt 1 'pleural effusion' (now 'cardiomegaly')", "--overwrite")
    _refused(_generate(out, prompts, "--seed", "5"), capsys, "seed 0 (now 5)")
    _refused(_generate(out, prompts, "--steps", "2"), capsys, "num_inference_steps 1 (now 2)")
    copy = tmp_path / "pipeline-copy"
    shutil.copytree(PIPELINE, copy)
    (copy / "scheduler" / "scheduler_config.json").write_text(
        (copy / "scheduler" / "scheduler_config.json").read_text().replace("{", '{"steps_offset": 1,', 1)
    )
    args = _generate(out, prompts)
    args[args.index(str(PIPELINE))] = str(copy)
    _refused(args, capsys, "model ")
    assert (out / "images" / "000001.png").read_bytes() == first
    assert main(_generate(out, other, "--overwrite")) == 0
    assert "cardiomegaly" in (out / "metadata.csv").read_text()


def test_generate_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\n")
    out = tmp_path / "generated"
    (out / "images").mkdir(parents=True)
    (out / "images" / "000000.png").write_bytes(b"not made here")
    _refused(_generate(out, prompts), capsys, "no generation.json", "--overwrite")


# ---------------------------------------------------------------- 2. the bad-file policy holds every time
def test_raise_run_does_not_reuse_an_index_built_under_skip(corrupt_phantom_root, tmp_path, caplog):
    from cxr_ldm.data import MimicCxrDataModule
    from cxr_ldm.data.bad_samples import BadSampleError

    def data(policy: str) -> MimicCxrDataModule:
        return MimicCxrDataModule(
            root=str(corrupt_phantom_root), cache_dir=str(tmp_path), bad_sample_policy=policy,
            num_workers=0, image_size=16, no_finding_cap=None, views=["ALL"],
        )  # fmt: skip

    data("skip").setup("fit")
    caplog.clear()
    with caplog.at_level("WARNING", logger="cxr_ldm.data"):
        again = data("skip")
        again.setup("fit")  # reuses the index: its skips are reported again, as a warning
    assert again.index_skipped
    assert any(f"skipped {len(again.index_skipped)} bad files" in r.getMessage() for r in caplog.records)
    with pytest.raises(BadSampleError, match="bad_sample_policy=skip"):
        data("raise").setup("fit")


# ---------------------------------------------------------------- 6. no drop without a record
def _copy_tables(source, root):
    """A MIMIC tree at `root` that shares `source`'s image and report files but has its own CSVs."""
    root.mkdir()
    (root / "files").symlink_to(source / "files")
    for table in source.glob("mimic-cxr-2.0.0-*.csv.gz"):
        shutil.copy(table, root / table.name)
    return root


def _data(root, cache, policy="skip"):
    from cxr_ldm.data import MimicCxrDataModule

    return MimicCxrDataModule(
        root=str(root), cache_dir=str(cache), bad_sample_policy=policy, num_workers=0, image_size=16,
        no_finding_cap=None,
    )  # fmt: skip


def test_image_missing_from_the_split_csv_is_named_counted_and_stops_raise(phantom_root, tmp_path):
    import gzip
    import json

    from cxr_ldm.data.bad_samples import BadSampleError

    root = _copy_tables(phantom_root, tmp_path / "tree")
    split = root / "mimic-cxr-2.0.0-split.csv.gz"
    header, first, *rest = gzip.decompress(split.read_bytes()).decode().splitlines(keepends=True)
    split.write_bytes(gzip.compress("".join([header, *rest]).encode()))
    dropped = first.split(",")[0]
    data = _data(root, tmp_path / "cache")
    data.setup("fit")
    assert any(dropped in s.path and "split CSV" in s.reason for s in data.index_skipped)
    summary = json.loads((data.index_folder() / "summary.json").read_text())
    assert summary["dropped"]["bad_files_by_reason"]["image not listed in the split CSV"] == 1
    assert dropped in (data.index_folder() / "skipped.csv").read_text()
    with pytest.raises(BadSampleError, match=rf"{dropped}.*split CSV"):
        _data(root, tmp_path / "cache", "raise").setup("fit")


@pytest.mark.parametrize("form", ["csv", "csv.gz-cut-stream", "csv.gz-cut-rows"])
def test_truncated_tables_are_noticed_in_every_format(phantom_root, tmp_path, form):
    import gzip

    from cxr_ldm.data.mimic_tables import MimicTableError

    root = _copy_tables(phantom_root, tmp_path / "tree")
    packed = root / "mimic-cxr-2.0.0-metadata.csv.gz"
    text = gzip.decompress(packed.read_bytes())
    cut = text[: len(text) - 25]  # mid-row
    if form == "csv":
        packed.unlink()
        (root / "mimic-cxr-2.0.0-metadata.csv").write_bytes(cut)
    elif form == "csv.gz-cut-stream":
        packed.write_bytes(packed.read_bytes()[:-40])
    else:
        packed.write_bytes(gzip.compress(cut))
    with pytest.raises(MimicTableError, match=r"metadata\.csv.*truncated"):
        _data(root, tmp_path / "cache").setup("fit")


def test_prompt_files_keep_empty_prompts_and_notice_cut_rows(tmp_path):
    from cxr_ldm.data.table_files import TruncatedTableError
    from cxr_ldm.generation.prompt_records import read_prompt_file

    good = tmp_path / "prompts.csv"
    good.write_text("prompt,Pleural Effusion\n,1\nnormal,0")  # no final newline: fine for a hand-written file
    records = read_prompt_file(good)
    assert [r.prompt for r in records] == ["", "normal"]
    assert records[0].labels == {"Pleural Effusion": 1.0}
    cut = tmp_path / "cut.csv"
    cut.write_text("prompt,Pleural Effusion\nnormal,0\nlarge eff")
    with pytest.raises(TruncatedTableError, match=r"cut\.csv line 3"):
        read_prompt_file(cut)
    for name, content, needle in (("empty.csv", b"", "is empty"), ("latin1.txt", "d\xe9j\xe0 vu\n".encode("latin-1"), "UTF-8"),
                                  ("latin1.csv", "prompt\nd\xe9j\xe0 vu\n".encode("latin-1"), "UTF-8")):  # fmt: skip
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError, match=needle):
            read_prompt_file(tmp_path / name)


def test_a_misspelled_label_column_of_a_prompt_file_is_refused_and_other_columns_are_named(tmp_path, caplog):
    """`Pleural Efusion` was read as no label at all: every prompt came out unlabelled and `evaluate` skipped
    the conditional metrics. A column named nearly as a label is refused; other columns are left out, said."""
    from cxr_ldm.generation.prompt_records import read_prompt_file

    typo = tmp_path / "typo.csv"
    typo.write_text("prompt,Pleural Efusion\neffusion,1\nnormal,0\n")
    with pytest.raises(
        ConfigError, match="column 'Pleural Efusion' is no CheXpert label; did you mean 'Pleural Effusion'"
    ):
        read_prompt_file(typo)
    (tmp_path / "case.csv").write_text("prompt,edema\nedema,1\n")
    with pytest.raises(ConfigError, match="did you mean 'Edema'"):
        read_prompt_file(tmp_path / "case.csv")
    notes = tmp_path / "notes.csv"
    notes.write_text("prompt,Edema,source\nedema,1,atlas\n")
    with caplog.at_level("WARNING", logger="cxr_ldm"):
        assert [r.labels for r in read_prompt_file(notes)] == [{"Edema": 1.0}]
    assert any("['source'] are neither prompt" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- 9. prompts, paths and caches that do not fit
def test_overlong_prompts_are_counted_once(tmp_path, caplog):
    prompts = tmp_path / "prompts.txt"
    long = " ".join(["small right pleural effusion"] * 30)
    prompts.write_text(f"normal\n{long}\n")
    with caplog.at_level("WARNING", logger="cxr_ldm"):
        assert main(_generate(tmp_path / "out", prompts)) == 0
    warned = [r.getMessage() for r in caplog.records if "longer than the text encoder" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("1 of 2 distinct prompts") and "77 tokens" in warned[0]


def test_overlong_training_prompts_are_counted_once(tmp_path, phantom_root, caplog):
    args = fit_args(
        tmp_path, phantom_root, "--model.init_args.conditioning.max_prompt_tokens", "8", "--trainer.max_steps", "1",
        "--trainer.limit_val_batches", "0",
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="cxr_ldm"):
        assert main(args) == 0
    warned = [r.getMessage() for r in caplog.records if "longer than the text encoder" in r.getMessage()]
    assert len(warned) == 1 and "8 tokens" in warned[0]


@pytest.mark.parametrize("form", ["relative", "dotted", "home"])
def test_a_path_is_never_tried_as_a_hub_id(tmp_path, phantom_root, capsys, monkeypatch, form):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    name = {"relative": "runs/no-such-pipeline", "dotted": "./no-such", "home": "~/no-such-cxr-ldm-pipeline"}[
        form
    ]
    args = fit_args(
        tmp_path, phantom_root, "--model.init_args.components.pretrained_model_name_or_path", name,
        "--model.init_args.components.unet_config", "null",
    )  # fmt: skip
    _refused(args, capsys, name, "does not exist")


def test_latent_cache_of_another_vae_is_refused(tmp_path, phantom_root, capsys):
    args = fit_args(
        tmp_path, phantom_root, "--data.init_args.latent_cache_vae", str(PIPELINE), "--trainer.max_steps", "1"
    )  # the tiny config's VAE is its own, not the pipeline's
    _refused(args, capsys, "latent_cache_vae", "is not the model's VAE")
    assert not (tmp_path / "checkpoints").exists()


# ---------------------------------------------------------------- 8. nothing left behind
def _killed_mid_write(target) -> list:
    """Start an atomic write of `target` in another process and kill -9 it there; returns what it left."""
    code = (
        "import importlib.util, os, signal, sys\n"  # the module alone: no torch import, a fast start
        "spec = importlib.util.spec_from_file_location('atomic', 'cxr_ldm/data/atomic.py')\n"
        "atomic = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(atomic)\n"
        "atomic_path = atomic.atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    open(tmp, 'wb').write(b'half a file')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT, timeout=120)
    assert result.returncode == -9
    left = list(target.parent.glob(".*.tmp"))
    assert left and not target.exists()
    return left


def test_orphans_of_killed_writes_are_removed_and_runs_keep_their_own_folders(tmp_path, phantom_root):
    cache, run = tmp_path / "cache", tmp_path / "run"
    data_orphan = _killed_mid_write(cache / "mimic-index-0123" / "images-4567" / "images.npy")
    ckpt_orphan = _killed_mid_write(run / "checkpoints" / "last.ckpt")
    old_style = cache / ".index.csv.abc123.tmp"  # a name without its writer: judged by its age
    old_style.write_bytes(b"x")
    os.utime(old_style, (1, 1))
    args = fit_args(run, phantom_root, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0")
    args[args.index("--data.init_args.cache_dir") + 1] = str(cache)
    assert main(args) == 0
    for orphan in [*data_orphan, *ckpt_orphan, old_style]:
        assert not orphan.exists(), orphan
    assert (run / "checkpoints" / "last.ckpt").is_file()
    # per-run skip records live under the run, made by the first skip: a run that skipped nothing has none
    assert not list(cache.rglob("load-skips-*")) and not list(run.glob("load-skips-*"))
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_running_writer_keeps_its_temporary_file(tmp_path):
    from cxr_ldm.data.atomic import atomic_path, clean_stale_temporaries

    with atomic_path(tmp_path / "x.bin") as tmp:
        open(tmp, "wb").write(b"in progress")
        assert clean_stale_temporaries(tmp_path) == []
    assert (tmp_path / "x.bin").read_bytes() == b"in progress"


def test_validation_samples_refuse_negative_guidance_and_zero_steps():
    from cxr_ldm.callbacks import ValidationSamples

    with pytest.raises(ConfigError, match="guidance_scale must be a finite number >= 0"):
        ValidationSamples(["normal"], guidance_scale=-1.0)
    with pytest.raises(ConfigError, match="num_inference_steps"):
        ValidationSamples(["normal"], num_inference_steps=0)


def test_an_empty_prompt_stays_empty_through_generation(tmp_path):
    from cxr_ldm.generation.generated_folder import read_generated

    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt,Pleural Effusion\n,1\nnormal,0\n")
    assert main(_generate(tmp_path / "out", prompts)) == 0
    assert read_generated(tmp_path / "out").prompts == ["", "normal"]


def test_an_unreadable_or_foreign_checkpoint_is_refused_by_name(tmp_path, phantom_root, tiny_fit, capsys):
    """A truncated checkpoint (a copy cut short), a file no fit wrote, and a resume with other trained parts:
    one line naming the file (or the key) and the fix, exit 2, no traceback."""
    import torch

    last = tiny_fit / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"net.weight": torch.zeros(2)}}, foreign)
    for path, needle in ((truncated, "truncated"), (foreign, "no checkpoint written by")):
        _refused(["export", "--ckpt", str(path), "--out", str(tmp_path / "out")], capsys, str(path), needle)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\n")
    _refused(["generate", "--model", str(truncated), "--prompts", str(prompts), "--out", str(tmp_path / "g")],
             capsys, str(truncated), "truncated")  # fmt: skip
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(last, run / "checkpoints" / "last.ckpt")
    other_parts = ["--model.init_args.trainable", '{"unet": {"lr": 1e-4}, "text_encoder": {"lr": 1e-4}}']
    _refused(
        fit_args(run, phantom_root, *other_parts, "--ckpt_path", "last"), capsys, "model.init_args.trainable"
    )


def test_resuming_from_a_checkpoint_of_another_model_or_other_settings_is_refused(
    tmp_path, phantom_root, tiny_fit, capsys
):
    """A classifier resumed from a LatentDiffusion checkpoint, or from a classifier of other findings, failed
    inside Lightning with a traceback listing every key it missed or could not fit."""
    import torch

    from cxr_ldm.evaluation.evaluators import CxrClassifier

    run = tmp_path / "run"
    classifier = ["fit", "--config", str(ROOT / "configs/classifier/tiny-phantom.yaml"), "--data.init_args.root",
                  str(phantom_root), "--data.init_args.cache_dir", str(tmp_path / "cache"), "--trainer.default_root_dir",
                  str(run), "--trainer.logger.init_args.save_dir", str(run), "--trainer.enable_progress_bar", "false"]  # fmt: skip
    diffusion = tiny_fit / "checkpoints" / "last.ckpt"
    _refused(
        [*classifier, "--ckpt_path", str(diffusion)], capsys, "holds a LatentDiffusion, not a CxrClassifier"
    )
    edema = CxrClassifier(
        ["Edema", "Atelectasis"], image_size=64, growth_rate=8, block_config=(2, 2, 2), num_init_features=16
    )
    torch.save({"state_dict": edema.state_dict()}, tmp_path / "edema.ckpt")
    _refused([*classifier, "--ckpt_path", str(tmp_path / "edema.ckpt")], capsys,
             "built with other settings (head.weight (2, ", "the config it was trained with")  # fmt: skip
    assert not (run / "checkpoints").exists()


def test_an_output_folder_that_is_a_file_and_a_missing_encoder_are_named(tmp_path, capsys):
    """`generate --out FILE`, `phantom --out FILE`, `text-similarity --encoders MISSING`: one line naming the
    path and the option, exit 2."""
    taken = tmp_path / "taken"
    taken.write_text("a file")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("normal\n")
    pipeline = str(ROOT / "artifacts" / "tiny-pretrained")
    _refused(["generate", "--model", pipeline, "--prompts", str(prompts), "--out", str(taken), "--steps", "1"],
             capsys, str(taken), "is a file")  # fmt: skip
    from cxr_ldm.commands.phantom import main as phantom

    assert phantom(["--out", str(taken), "--studies", "10", "--size", "32"]) == 2
    assert "is a file" in capsys.readouterr().err
    _refused(
        ["text-similarity", "--encoders", str(tmp_path / "no-encoder")], capsys, "no-encoder", "--encoders"
    )


def test_a_generated_folder_missing_an_image_is_named_with_the_fix(tmp_path):
    from cxr_ldm.generation.generated_folder import METADATA, read_generated

    folder = tmp_path / "generated"
    (folder / "images").mkdir(parents=True)
    (folder / METADATA).write_text("file_name,prompt\nimages/000000.png,normal\n")
    with pytest.raises(
        ConfigError, match=r"lists images/000000\.png, which cannot be read.*`generate` resumes"
    ):
        read_generated(folder)


def test_a_local_pipeline_folder_missing_a_part_is_named_with_the_part_not_sent_to_the_hub(tmp_path):
    """A copy of the pretrained pipeline without its `unet/` was answered with `hf download <the folder>`: a
    local path offered as a hub id to download. The message names the missing part and the folder's fix."""
    from cxr_ldm.models.components import load_components
    from cxr_ldm.pretrained import ComponentLoadError

    copy = tmp_path / "pipeline"
    shutil.copytree(ROOT / "artifacts" / "tiny-pretrained", copy)
    shutil.rmtree(copy / "unet")
    with pytest.raises(ComponentLoadError, match=f"U-Net from the local folder {copy / 'unet'}") as refused:
        load_components(str(copy))
    assert "incomplete or damaged" in str(refused.value) and "hf download" not in str(refused.value)
