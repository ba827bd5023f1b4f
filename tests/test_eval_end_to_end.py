"""Evaluators trained on the phantom, then `generate` and `evaluate` end to end on a tiny LatentDiffusion.

The phantom evaluators are not clinical; these tests check that the metrics behave as metrics must.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from _tiny_run import ROOT
from PIL import Image

from cxr_ldm.__main__ import main
from cxr_ldm.checkpoints import load_checkpoint
from cxr_ldm.data.real_split import read_split
from cxr_ldm.evaluation.evaluators import CxrClassifier, ImageTextRetriever
from cxr_ldm.evaluation.metrics.conditioned_classification import conditioned_classification
from cxr_ldm.evaluation.metrics.features import batched
from cxr_ldm.evaluation.metrics.fid import fid_classifier, kid_classifier
from cxr_ldm.evaluation.metrics.text_retrieval import t2i_recall_at_k
from cxr_ldm.labels import label_columns
from cxr_ldm.training.datamodule import load_datamodule

DATA = {
    "class_path": "cxr_ldm.data.MimicCxrDataModule",
    "init_args": {
        "views": ["PA", "AP"],
        "max_chars": None,
        "no_finding_cap": None,
        "split": "seeded",
        "split_ratios": [0.6, 0.2, 0.2],
        "image_size": 64,
        "channels": 1,
        "batch_size": 32,
        "num_workers": 0,
    },
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="module")
def eval_phantom(work) -> Path:
    """More studies than the shared phantom, so the test split has positives of every headline finding."""
    from cxr_ldm.phantom import generate_phantom

    generate_phantom(work / "phantom", 400, 64, 0, progress=False, workers=1)
    return work / "phantom"


@pytest.fixture(scope="module")
def data_yaml(work, eval_phantom) -> Path:
    config = json.loads(json.dumps(DATA))
    config["init_args"].update(root=str(eval_phantom), cache_dir=str(work / "cache"))
    path = work / "data.yaml"
    path.write_text(yaml.safe_dump({"data": config}))
    return path


def _fit_evaluator(config: str, run: Path, phantom: Path, cache: Path, *extra: str) -> Path:
    args = ["fit", "--config", str(ROOT / "configs" / config), "--data.init_args.root", str(phantom),
            "--data.init_args.cache_dir", str(cache), "--trainer.default_root_dir", str(run),
            "--trainer.logger.init_args.save_dir", str(run), "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    assert main(args) == 0
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def classifier_ckpt(work, eval_phantom) -> Path:
    """A classifier trained a few epochs: the metrics' and commands' tests need a classifier's features and
    outputs, not a good one (the config's full budget is `trained_classifier_ckpt`, a long check)."""
    run = work / "classifier-short"
    return _fit_evaluator(
        "classifier/tiny-phantom.yaml", run, eval_phantom, work / "cache", "--trainer.max_epochs", "8"
    )


@pytest.fixture(scope="module")
def trained_classifier_ckpt(work, eval_phantom) -> Path:
    """configs/classifier/tiny-phantom.yaml at its own budget (60 epochs, about 50 s on 2 cores)."""
    return _fit_evaluator("classifier/tiny-phantom.yaml", work / "classifier", eval_phantom, work / "cache")


@pytest.fixture(scope="module")
def retriever_ckpt(work, eval_phantom) -> Path:
    return _fit_evaluator("retriever/tiny-phantom.yaml", work / "retriever", eval_phantom, work / "cache")


@pytest.fixture(scope="module")
def ldm_ckpt(tiny_fit) -> Path:
    return tiny_fit / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def real_test(data_yaml):
    return read_split(load_datamodule(data_yaml), "test")


@pytest.mark.slow  # the config's whole training budget: about 50 s
def test_classifier_is_good_on_real_and_chance_on_noise(trained_classifier_ckpt, real_test):
    classifier = load_checkpoint(trained_classifier_ckpt, CxrClassifier, "--classifier")
    labels = real_test.labels[:, label_columns(classifier.findings)]
    probs = batched(lambda x: torch.sigmoid(classifier(x)), real_test.pixels01())
    real, _ = conditioned_classification(probs, labels, classifier.findings)
    noise_images = torch.rand_like(real_test.pixels01())
    noise_probs = batched(lambda x: torch.sigmoid(classifier(x)), noise_images)
    noise, _ = conditioned_classification(noise_probs, labels, classifier.findings)
    print(f"real {real}\nnoise {noise}")
    assert real["cond_auroc"] > 0.8
    assert real["cond_accuracy"] > 0.75
    assert abs(noise["cond_auroc"] - 0.5) < 0.2


def test_fid_real_vs_real_far_below_real_vs_noise(classifier_ckpt, real_test):
    classifier = load_checkpoint(classifier_ckpt, CxrClassifier, "--classifier")
    images = real_test.pixels01()
    half = len(images) // 2
    real_real = fid_classifier(images[:half], images[half:], classifier)
    real_noise = fid_classifier(images[:half], torch.rand_like(images[half:]), classifier)
    print(f"FID real/real {real_real:.3f}, real/noise {real_noise:.3f}")
    assert real_real < 0.2 * real_noise


def test_kid_is_seeded_and_leaves_the_global_generator_alone(classifier_ckpt, real_test):
    classifier = load_checkpoint(classifier_ckpt, CxrClassifier, "--classifier")
    images = real_test.pixels01()
    half = len(images) // 2
    noise = torch.rand_like(images[half:], generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = kid_classifier(images[:half], noise, classifier, subsets=5)
    assert torch.equal(torch.rand(3), expected_next)  # subsets drawn from their own seed
    assert kid_classifier(images[:half], noise, classifier, subsets=5) == first
    assert kid_classifier(images[:half], images[half:], classifier, subsets=5) < first


def test_retriever_finds_real_images_by_their_reports(retriever_ckpt, real_test):
    retriever = load_checkpoint(retriever_ckpt, ImageTextRetriever, "--retriever")
    queries = sorted(set(real_test.prompts))
    with torch.no_grad():
        text = retriever.encode_texts(queries)
        images = batched(retriever.encode_images, real_test.pixels01())
    recall = t2i_recall_at_k(text, queries, images, real_test.prompts, ks=(1, 5, 10))
    print(recall)
    # Recall@1 over 75 queries is a count of a few hits (3 hits at chance 1/75 is p = 0.08): too few to tell a
    # retriever from chance. Every query's full ranking is judged instead: the rank of its first matching
    # image, averaged, against the same average over 200 random orderings of the images (a permutation test).
    matches = torch.tensor([[q == p for p in real_test.prompts] for q in queries])
    order = (text.float() @ images.float().t()).argsort(dim=1, descending=True)

    def mean_first_rank(ranking: torch.Tensor) -> float:
        return float(matches.gather(1, ranking).float().argmax(dim=1).float().mean())

    generator = torch.Generator().manual_seed(0)
    chance = [mean_first_rank(torch.stack([torch.randperm(len(images), generator=generator) for _ in queries]))
              for _ in range(200)]  # fmt: skip
    observed = mean_first_rank(order)
    print({"mean_first_rank": observed, "chance_min": min(chance), "chance_mean": sum(chance) / len(chance)})
    assert observed < min(chance)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_generate_resumes_and_shards(work, ldm_ckpt, data_yaml, monkeypatch):
    out = work / "generated"
    common = ["generate", "--model", str(ldm_ckpt), "--data-config", str(data_yaml), "--split", "test",
              "--limit", "5", "--per-prompt", "2", "--steps", "3", "--batch-size", "4", "--no-progress"]  # fmt: skip
    # Two "ranks" of a world of 2 share the work; rank 0 writes metadata.csv once all images exist.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main([*common, "--out", str(out)]) == 0
    odd = sorted(p.name for p in (out / "images").glob("*.png"))
    assert odd == [f"{i:06d}.png" for i in range(1, 10, 2)] and not (out / "metadata.csv").exists()
    monkeypatch.setenv("RANK", "0")
    assert main([*common, "--out", str(out)]) == 0
    assert len(list((out / "images").glob("*.png"))) == 10
    import pandas as pd

    meta = pd.read_csv(out / "metadata.csv")
    assert meta["seed"].tolist() == list(range(10)) and "Pleural Effusion" in meta and "study_id" in meta
    # Resume: a deleted image is drawn again, identical (seed = seed + index), the others are kept.
    monkeypatch.setenv("WORLD_SIZE", "1")
    before = _png(out / "images" / "000003.png")
    kept = (out / "images" / "000004.png").stat().st_mtime_ns
    (out / "images" / "000003.png").unlink()
    assert main([*common, "--out", str(out)]) == 0
    assert np.array_equal(_png(out / "images" / "000003.png"), before)
    assert (out / "images" / "000004.png").stat().st_mtime_ns == kept
    # The folder reads back as an image/prompt data set.
    from cxr_ldm.data.image_text_folder import ImageTextFolder

    assert len(ImageTextFolder(out, image_size=32)) == 10


def test_generate_rank_0_run_before_the_others_names_what_is_missing(
    work, ldm_ckpt, data_yaml, monkeypatch, capsys
):
    """Ranks run one after another (RANK / WORLD_SIZE, no torchrun) share no barrier: rank 0 run first has its
    own images only; it says which are missing and how to finish, in one line (a RuntimeError before)."""
    out = work / "generated-rank0-first"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    args = ["generate", "--model", str(ldm_ckpt), "--data-config", str(data_yaml), "--split", "test", "--limit", "2",
            "--per-prompt", "1", "--steps", "2", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 images are missing" in err and "000001.png" in err and "then rank 0 again" in err
    assert not (out / "metadata.csv").exists()


def test_generate_under_torchrun_with_a_bad_argument_exits_before_it_waits_for_the_other_ranks(tmp_path):
    """A rank joined the process group before it read its arguments: with a missing --model it waited for the
    other ranks (6 hours) instead of saying so."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "29599"}  # fmt: skip
    args = [sys.executable, "-m", "cxr_ldm", "generate", "--model", str(tmp_path / "missing.ckpt"), "--prompts",
            str(tmp_path / "p.txt"), "--out", str(tmp_path / "out")]  # fmt: skip
    (tmp_path / "p.txt").write_text("normal\n")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "missing.ckpt" in done.stderr


@pytest.mark.slow  # two gloo processes
def test_generate_under_torchrun_meets_at_a_barrier_before_metadata(work, ldm_ckpt, data_yaml):
    """Rank 0 resumed with all its images done reached the check for missing images before rank 1 had drawn
    its share (no process group: the barrier was skipped) and failed without metadata.csv."""
    import os
    import socket
    import subprocess
    import sys

    out = work / "generated-torchrun"
    # rank 1 has 8 images of 20 sampler steps to draw, rank 0 none: without the barrier rank 0 checks at once
    args = ["generate", "--model", str(ldm_ckpt), "--data-config", str(data_yaml), "--split", "test", "--limit", "8",
            "--per-prompt", "2", "--steps", "20", "--no-progress", "--out", str(out)]  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip
    first = subprocess.run(
        [sys.executable, "-m", "cxr_ldm", *args], env={**env, "WORLD_SIZE": "1"}, timeout=600
    )
    assert first.returncode == 0
    for name in ("metadata.csv", *(f"images/{i:06d}.png" for i in range(1, 16, 2))):
        (out / name).unlink()  # rank 0's images are done, rank 1's are not
    ranks = [subprocess.Popen([sys.executable, "-m", "cxr_ldm", *args], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]  # fmt: skip
    for process in ranks:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-3000:]
    assert (out / "metadata.csv").is_file() and len(list((out / "images").glob("*.png"))) == 16


def test_evaluate_end_to_end(work, ldm_ckpt, data_yaml, classifier_ckpt, retriever_ckpt):
    out = work / "evaluation"
    args = ["evaluate", "--model", str(ldm_ckpt), "--data", str(data_yaml), "--classifier", str(classifier_ckpt),
            "--retriever", str(retriever_ckpt), "--limit", "8", "--per-prompt", "2", "--steps", "3",
            "--out", str(out), "--no-progress", "--vae-images", "8"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ["fid_xrv", "kid_xrv", "ms_ssim", "cond_auroc", "cond_accuracy", "cond_accuracy/Pleural Effusion",
                "i2i_precision@5", "t2i_recall@5", "report_f1", "report_bleu", "report_rougeL", "vae_psnr",
                "vae_ssim", "vae_rmse", "vae_evaluator_agreement", "memorization_min_distance"]:  # fmt: skip
        assert key in metrics, key
    assert "fid_inception" in metrics["skipped"]
    assert (out / "metrics.md").read_text().startswith("| metric | value |")
    # the operating points are the evaluator's on the real validation images (they were chosen on the test
    # images, whose labels then moved the scores of the generated ones)
    from cxr_ldm.evaluation.metrics.operating_points import operating_points

    classifier = load_checkpoint(classifier_ckpt, CxrClassifier, "classifier")
    validate = read_split(load_datamodule(data_yaml), "validate", 2000)
    probabilities = classifier.predict_proba(validate.pixels())
    cuts = operating_points(
        probabilities, validate.labels[:, label_columns(classifier.findings)], classifier.findings
    )
    assert metrics["info"]["thresholds"] == {f: round(cut, 4) for f, cut in cuts.items()}
    assert metrics["info"]["real_validate"] == len(validate)
    # Without a retriever, on the same images: its metrics are listed as skipped, with the reason.
    out2 = work / "evaluation-no-retriever"
    assert main(["evaluate", "--generated", str(out / "generated"), "--data", str(data_yaml),
                 "--classifier", str(classifier_ckpt), "--out", str(out2)]) == 0  # fmt: skip
    skipped = json.loads((out2 / "metrics.json").read_text())["skipped"]
    assert "retriever" in skipped["t2i_recall@5"] and "vae_psnr" in skipped


def test_evaluate_unlabelled_prompts_needs_no_validation_images(work, ldm_ckpt, data_yaml, classifier_ckpt):
    """Prompts without labels use no operating point: evaluate read the validation split all the same, and a
    data config that leaves it empty stopped the run."""
    prompts = work / "unlabelled.txt"
    prompts.write_text("pleural effusion\nno acute findings\n")
    generated = work / "unlabelled"
    assert main(["generate", "--model", str(ldm_ckpt), "--prompts", str(prompts), "--per-prompt", "2", "--steps", "2",
                 "--out", str(generated), "--no-progress"]) == 0  # fmt: skip
    config = yaml.safe_load(data_yaml.read_text())
    config["data"]["init_args"]["max_images"] = {"validate": 0}
    emptied = work / "data-no-validate.yaml"
    emptied.write_text(yaml.safe_dump(config))
    out = work / "evaluation-unlabelled"
    assert main(["evaluate", "--generated", str(generated), "--data", str(emptied), "--classifier",
                 str(classifier_ckpt), "--out", str(out)]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["skipped"]["cond_accuracy"] == "the prompts have no labels"
        and metrics["info"]["real_validate"] == 0
    )


def test_finding_prompts_generate_and_evaluate(work, ldm_ckpt, data_yaml, classifier_ckpt, capsys):
    out = work / "finding-probe"
    common = ["generate", "--model", str(ldm_ckpt), "--finding-prompts", "--per-prompt", "2", "--steps", "2",
              "--out", str(out), "--no-progress"]  # fmt: skip
    # Report-mode training text has no one-finding prompt to write: a clear error, not made-up prompts.
    assert main([*common, "--data-config", str(data_yaml)]) == 2
    assert "--prompts" in capsys.readouterr().err
    labels_yaml = work / "data-labels.yaml"
    config = yaml.safe_load(data_yaml.read_text())
    config["data"]["init_args"]["prompt_mode"] = "labels"
    labels_yaml.write_text(yaml.safe_dump(config))
    assert main([*common, "--data-config", str(labels_yaml)]) == 0
    frame = pd.read_csv(out / "metadata.csv")
    assert sorted(frame["prompt"].unique()) == ["cardiomegaly", "normal", "pleural effusion", "pneumothorax"]
    headline = ["Cardiomegaly", "Pleural Effusion", "Pneumothorax", "No Finding"]
    assert (frame[headline].sum(axis=1) == 1).all() and len(
        frame
    ) == 8  # one finding per prompt, known labels
    assert main(["evaluate", "--generated", str(out), "--data", str(labels_yaml), "--classifier",
                 str(classifier_ckpt), "--out", str(work / "finding-probe-eval")]) == 0  # fmt: skip
    report = json.loads((work / "finding-probe-eval" / "metrics.json").read_text())
    for finding in headline:
        assert 0.0 <= report[f"cond_balanced_accuracy/{finding}"] <= 1.0
        assert 0.0 < report["info"]["thresholds"][finding] < 1.0


def test_generate_from_exported_pipeline(work, ldm_ckpt):
    pipeline = work / "pipeline"
    assert main(["export", "--ckpt", str(ldm_ckpt), "--out", str(pipeline)]) == 0
    prompts = work / "prompts.txt"
    prompts.write_text("pleural effusion\nnormal\n")
    out = work / "generated-pipeline"
    assert main(["generate", "--model", str(pipeline), "--prompts", str(prompts), "--per-prompt", "2",
                 "--steps", "2", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    assert _png(out / "images" / "000003.png").shape == (32, 32)


def test_clear_errors(work, classifier_ckpt, data_yaml, capsys):
    bad = work / "bad.csv"
    bad.write_text("text\nnormal\n")
    assert (
        main(["generate", "--model", str(classifier_ckpt), "--prompts", str(bad), "--out", str(work / "x")])
        == 2
    )
    assert "no `prompt` column" in capsys.readouterr().err
    prompts = work / "ok.txt"
    prompts.write_text("normal\n")
    assert (
        main(
            ["generate", "--model", str(classifier_ckpt), "--prompts", str(prompts), "--out", str(work / "x")]
        )
        == 2
    )
    assert "not a LatentDiffusion" in capsys.readouterr().err
    missing = work / "missing.ckpt"
    assert main(["evaluate", "--generated", str(work), "--data", str(data_yaml), "--classifier", str(missing),
                 "--out", str(work / "y")]) == 2  # fmt: skip
    assert "missing.ckpt does not exist" in capsys.readouterr().err


def test_pretrained_weights_are_never_downloaded(tmp_path):
    from cxr_ldm.errors import ConfigError

    with pytest.raises(ConfigError, match="is missing; nothing is downloaded"):
        CxrClassifier(weights="densenet121-res224-mimic_ch", weights_dir=str(tmp_path))


def test_generation_metrics_refuses_a_split_or_sampler_it_does_not_know_when_built():
    """`split: val` failed at the first validation of a fit with a bare KeyError."""
    from cxr_ldm.callbacks.generation_metrics import GenerationMetrics
    from cxr_ldm.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match=r"GenerationMetrics\.split must be one of \['train', 'validate', 'test'\], got 'val'",
    ):
        GenerationMetrics("any.ckpt", split="val")
    with pytest.raises(
        ConfigError, match=r"GenerationMetrics\.scheduler must be one of .*'dpm\+\+'.*got 'dpm'"
    ):
        GenerationMetrics("any.ckpt", scheduler="dpm")


def test_generation_metrics_refuses_at_the_start_of_a_fit_what_would_fail_at_its_first_evaluation(
    tmp_path, classifier_ckpt, data_yaml
):
    """A data module without the labelled splits, or a classifier checkpoint that is not there, failed at the
    callback's first evaluation (an AttributeError, or a missing file, hours into a fit)."""
    from types import SimpleNamespace

    from cxr_ldm.callbacks.generation_metrics import GenerationMetrics
    from cxr_ldm.data.image_text_folder import ImageTextFolderDataModule
    from cxr_ldm.errors import ConfigError

    folder = SimpleNamespace(datamodule=ImageTextFolderDataModule(str(tmp_path)))
    with pytest.raises(ConfigError, match=r"the data module ImageTextFolderDataModule has no such split"):
        GenerationMetrics(str(classifier_ckpt)).setup(folder, None, "fit")
    mimic = load_datamodule(data_yaml)
    mimic.setup()
    with pytest.raises(ConfigError, match=r"classifier_ckpt: checkpoint .*missing\.ckpt does not exist"):
        GenerationMetrics(str(tmp_path / "missing.ckpt")).setup(
            SimpleNamespace(datamodule=mimic), None, "fit"
        )
    GenerationMetrics(str(classifier_ckpt), split="test").setup(
        SimpleNamespace(datamodule=mimic), None, "fit"
    )


def test_generation_metrics_callback_logs_scalars(work, ldm_ckpt, data_yaml, classifier_ckpt):
    from types import SimpleNamespace

    from lightning.pytorch.loggers import TensorBoardLogger

    from cxr_ldm.callbacks.generation_metrics import GenerationMetrics
    from cxr_ldm.models import LatentDiffusion

    logged = {}
    logger = TensorBoardLogger(work / "callback-tb")
    logger.log_metrics = lambda metrics, step: logged.update(metrics)
    datamodule = load_datamodule(data_yaml)
    datamodule.setup()
    trainer = SimpleNamespace(datamodule=datamodule, logger=logger, global_step=0, sanity_checking=False)
    model = LatentDiffusion.load_from_checkpoint(ldm_ckpt, map_location="cpu")
    callback = GenerationMetrics(str(classifier_ckpt), split="test", every_n_validations=2, num_images=4,
                                 num_inference_steps=2)  # fmt: skip
    callback.on_validation_epoch_end(trainer, model)
    assert not logged  # every 2nd validation only
    # resumed from a checkpoint after that validation: the count goes on, the next one evaluates
    resumed = GenerationMetrics(str(classifier_ckpt), split="test", every_n_validations=2, num_images=4,
                                num_inference_steps=2)  # fmt: skip
    resumed.load_state_dict(callback.state_dict())
    resumed.on_validation_epoch_end(trainer, model)
    assert {"eval/fid_xrv", "eval/ms_ssim", "eval/cond_accuracy"} <= set(logged)


@pytest.mark.slow  # two gloo processes; the one-process evaluation is test_evaluate_end_to_end
def test_evaluate_on_two_ranks_equals_one_process(work, ldm_ckpt, data_yaml, classifier_ckpt, retriever_ckpt):
    """Two CPU processes (gloo) share generation and evaluator features; rank 0's metrics equal one process's."""
    import os
    import socket
    import subprocess
    import sys

    common = ["--model", str(ldm_ckpt), "--data", str(data_yaml), "--classifier", str(classifier_ckpt),
              "--retriever", str(retriever_ckpt), "--limit", "5", "--per-prompt", "2", "--steps", "2",
              "--no-progress", "--vae-images", "4"]  # fmt: skip
    assert main(["evaluate", *common, "--out", str(work / "eval-1")]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip
    ranks = [
        subprocess.Popen(
            [sys.executable, "-m", "cxr_ldm", "evaluate", *common, "--out", str(work / "eval-2")],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    for process in ranks:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-3000:]
    one = json.loads((work / "eval-1" / "metrics.json").read_text())
    two = json.loads((work / "eval-2" / "metrics.json").read_text())
    assert two["info"]["ranks"] == 2 and one["info"]["ranks"] == 1
    for name in sorted((work / "eval-1" / "generated" / "images").glob("*.png")):
        assert np.array_equal(_png(name), _png(work / "eval-2" / "generated" / "images" / name.name)), name
    values = {k: v for k, v in one.items() if k not in ("skipped", "info")}
    assert {"fid_xrv", "kid_xrv", "t2i_recall@1", "memorization_feature_mean_distance"} <= set(values)
    assert set(values) == {k for k in two if k not in ("skipped", "info")}
    for key, value in values.items():
        assert two[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert (work / "eval-2" / "memorization-feature.png").is_file()
