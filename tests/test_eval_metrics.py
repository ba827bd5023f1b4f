"""Metric functions on hand-made inputs: relations any honest metric satisfies."""

from __future__ import annotations

import math

import pytest
import torch

from cxr_ldm.evaluation.metrics.conditioned_classification import conditioned_classification
from cxr_ldm.evaluation.metrics.diversity import ms_ssim_diversity, ms_ssim_settings
from cxr_ldm.evaluation.metrics.image_retrieval import i2i_precision_at_k
from cxr_ldm.evaluation.metrics.memorization import memorization_metrics
from cxr_ldm.evaluation.metrics.operating_points import operating_points, youden_threshold
from cxr_ldm.evaluation.metrics.reconstruction import reconstruction_metrics
from cxr_ldm.evaluation.metrics.report_agreement import label_f1, report_agreement
from cxr_ldm.evaluation.metrics.text_retrieval import t2i_recall_at_k


@pytest.mark.parametrize("side", [16, 32, 64, 512])
def test_ms_ssim_of_identical_images_is_one(side):
    betas, kernel = ms_ssim_settings(side)
    assert math.isclose(sum(betas), 1.0) and kernel >= 3
    if side == 512:
        assert len(betas) == 5 and kernel == 11
    image = torch.rand(1, 1, side, side)
    pair = torch.cat([image, image])
    assert ms_ssim_diversity(pair, [0, 0]) == pytest.approx(1.0, abs=1e-4)
    noise = torch.rand(2, 1, side, side)
    assert ms_ssim_diversity(noise, [0, 0]) < 0.9  # coarse scales of noise average to grey


@pytest.mark.parametrize("side", [32, 64])
def test_ms_ssim_uses_its_range_on_small_images(side):
    """Unrelated images score near 0 and a faintly noisy copy near 1: a window of about one pixel (3 px,
    sigma 0.3) gave unrelated images about 0.5 at these sizes."""
    betas, kernel = ms_ssim_settings(side)
    assert kernel >= 7 and len(betas) == {32: 3, 64: 4}[side]
    generator = torch.Generator().manual_seed(0)

    def smooth(n):
        coarse = torch.rand(n, 1, side // 8, side // 8, generator=generator)
        return torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic").clamp(0, 1)

    a, b = smooth(8), smooth(8)
    unrelated = ms_ssim_diversity(torch.cat([a, b]), list(range(8)) * 2)
    noisy = (a + 0.02 * torch.randn(a.shape, generator=generator)).clamp(0, 1)
    copies = ms_ssim_diversity(torch.cat([a, noisy]), list(range(8)) * 2)
    assert unrelated < 0.2 and copies > 0.95


def test_ms_ssim_needs_two_samples_per_prompt():
    with pytest.raises(ValueError, match="per-prompt"):
        ms_ssim_diversity(torch.rand(2, 1, 32, 32), [0, 1])


def test_conditioned_classification_perfect_and_unknown():
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, 1.0]])
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6]])
    metrics, skipped = conditioned_classification(probs, labels, ["A", "B"])
    assert metrics["cond_accuracy/A"] == 1.0 and metrics["cond_auroc/A"] == 1.0
    assert metrics["cond_accuracy/B"] == 1.0 and "cond_auroc/B" in skipped  # only positives known
    assert metrics["cond_balanced_accuracy/A"] == 1.0 and "cond_balanced_accuracy/B" in skipped


def test_balanced_accuracy_does_not_reward_calling_a_rare_finding_absent():
    labels = torch.tensor([[1.0]] + [[0.0]] * 9)
    probs = torch.full((10, 1), 0.1)
    metrics, _ = conditioned_classification(probs, labels, ["A"])
    assert metrics["cond_accuracy/A"] == pytest.approx(0.9)
    assert metrics["cond_balanced_accuracy/A"] == pytest.approx(0.5)


def test_operating_point_separates_low_scoring_positives_and_is_used_per_finding():
    # a rare finding scored low everywhere, but higher on its positives: 0.5 calls nothing, the Youden cut splits
    target = torch.tensor([1.0] * 5 + [0.0] * 45)
    probs = torch.cat([torch.linspace(0.2, 0.3, 5), torch.linspace(0.01, 0.1, 45)])
    cut = youden_threshold(probs, target)
    assert 0.1 < cut <= 0.2 + 1e-6
    points = operating_points(probs[:, None], target[:, None], ["A"])
    plain, _ = conditioned_classification(probs[:, None], target[:, None], ["A"])
    tuned, _ = conditioned_classification(probs[:, None], target[:, None], ["A"], thresholds=points)
    assert plain["cond_balanced_accuracy/A"] == 0.5 and tuned["cond_balanced_accuracy/A"] == 1.0
    assert youden_threshold(probs, torch.zeros(50)) == 0.5  # one class: no cut to choose


def test_retrieval_metrics_perfect_and_chance():
    features = torch.eye(4)
    labels = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1]])
    out = i2i_precision_at_k(features, labels, features, labels, ks=(1,))
    assert out["i2i_precision@1"] == 1.0 and out["i2i_precision_chance"] == 0.5
    prompts = ["a", "b", "c", "d"]
    recall = t2i_recall_at_k(features, prompts, features, prompts, ks=(1, 5))
    assert recall["t2i_recall@1"] == 1.0 and recall["t2i_recall_chance@1"] == 0.25


def test_report_text_and_label_metrics():
    prompts = ["small left pleural effusion", "no acute process", "My name is John", ""]
    reports = ["Small LEFT pleural-effusion.", "large pneumothorax", "Is your name John?", "..."]
    features, labels = torch.eye(4), torch.zeros(4, 2)
    for i, expected in enumerate([1.0, 0.0, 0.5, 0.0]):  # each image retrieves its own report
        out = report_agreement(features[i : i + 1], prompts[i : i + 1], labels[:1], features, reports, labels)
        assert out["report_rougeL"] == pytest.approx(expected)
    assert report_agreement(features, prompts, labels, features, reports, labels)["report_rougeL"] == (
        pytest.approx(1.5 / 4)
    )
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert label_f1(ref, ref)["report_f1"] == 1.0
    assert label_f1(1 - ref, ref)["report_f1"] == 0.0


def test_reconstruction_and_memorization_relations():
    images = torch.rand(4, 1, 32, 32)
    same = reconstruction_metrics(images, images)
    assert same["vae_rmse"] == 0.0 and same["vae_ssim"] == pytest.approx(1.0)
    noisy = reconstruction_metrics(images, (images + 0.1 * torch.randn_like(images)).clamp(0, 1))
    assert noisy["vae_psnr"] < 30 and noisy["vae_ssim"] < 1
    copies = memorization_metrics(images[:2], images, threshold=0.02)
    assert (
        copies["memorization_min_distance"] < 1e-6 and copies["memorization_fraction_below_threshold"] == 1.0
    )
    fresh = memorization_metrics(torch.rand(2, 1, 32, 32), images, threshold=0.02)
    assert fresh["memorization_fraction_below_threshold"] == 0.0


def test_vae_validation_and_evaluation_share_one_psnr():
    from cxr_ldm.models.autoencoder import Autoencoder

    pixels = torch.zeros(2, 1, 8, 8)  # [-1, 1]; 0.5 in [0, 1]
    recon = pixels + 0.2  # 0.6 in [0, 1]: error 0.1 everywhere, MSE 0.01
    validation = Autoencoder.image_metrics(recon, pixels)
    assert float(validation["psnr"]) == pytest.approx(20.0)
    assert float(validation["rmse"]) == pytest.approx(0.1)
    noisy = (pixels + 0.3 * torch.randn(2, 1, 8, 8)).clamp(-1, 1)
    evaluation = reconstruction_metrics((pixels + 1) / 2, (noisy + 1) / 2)
    assert {f"vae_{k}": float(v) for k, v in Autoencoder.image_metrics(noisy, pixels).items()} == evaluation


def test_memorization_finds_copies_in_pixel_and_feature_space(tmp_path):
    """Two training images copied into a generated set: both spaces find them first, at distance 0, and the
    grid shows them beside their training originals."""
    import numpy as np
    from PIL import Image

    from cxr_ldm.evaluation.evaluators import CxrClassifier
    from cxr_ldm.evaluation.metrics.memorization import (
        distance_summary,
        memorization_grid,
        nearest_feature_neighbours,
        nearest_pixel_neighbours,
    )

    torch.manual_seed(0)

    def smooth(n):  # distinct low-frequency patterns, so a CNN's features tell them apart
        return torch.nn.functional.interpolate(torch.rand(n, 1, 4, 4), size=(32, 32), mode="bilinear")

    train, held_out, fresh = smooth(20), smooth(10), smooth(6)
    generated = torch.cat([train[[3, 7]], fresh])
    pixel, pixel_index = nearest_pixel_neighbours(generated, train, side=32)
    assert pixel_index[:2].tolist() == [3, 7] and pixel[:2].max() < 1e-6 and pixel[2:].min() > 0.01
    classifier = CxrClassifier(image_size=32, growth_rate=4, block_config=(2, 2), num_init_features=8).eval()
    with torch.no_grad():
        features = {name: classifier.features(x * 2 - 1) for name, x in
                    (("generated", generated), ("train", train), ("held_out", held_out))}  # fmt: skip
    feature, feature_index = nearest_feature_neighbours(features["generated"], features["train"])
    reference, _ = nearest_feature_neighbours(features["held_out"], features["train"])
    assert feature_index[:2].tolist() == [3, 7] and feature[:2].max() < 1e-5
    # the copies are the closest (both at distance ~0: their order between them is rounding)
    assert sorted(torch.argsort(feature)[:2].tolist()) == [0, 1]
    summary = distance_summary("memorization_feature", feature, reference)
    assert summary["memorization_feature_min_distance"] < 1e-5
    assert summary["memorization_feature_fraction_below_reference_p01"] >= 2 / 8
    assert (
        summary["memorization_feature_reference_mean_distance"] > summary["memorization_feature_distance_p01"]
    )
    path = memorization_grid(
        generated, train, feature, feature_index, tmp_path / "grid.png", pairs=3, tile=32
    )
    with Image.open(path) as image:
        grid = np.asarray(image)
    assert grid.shape == (3 * (32 + 14), 2 * 32 + 4)
    assert np.array_equal(grid[:32, :32], grid[:32, 36:68])  # first row: a copy beside its original
    assert not np.array_equal(grid[2 * 46 : 2 * 46 + 32, :32], grid[2 * 46 : 2 * 46 + 32, 36:68])


def test_fid_and_kid_of_one_image_are_refused_by_name():
    """One generated image has no covariance (FID) and no pair (KID): a clear error, not torchmetrics' own or
    a NaN in the report."""
    from cxr_ldm.errors import ConfigError
    from cxr_ldm.evaluation.metrics.fid import fid_from_features, kid_from_features

    real, fake = torch.rand(8, 4), torch.rand(1, 4)
    for metric, name in ((fid_from_features, "FID"), (kid_from_features, "KID")):
        with pytest.raises(ConfigError, match=f"{name} needs at least two real and two generated images"):
            metric(real, fake)
    assert math.isfinite(fid_from_features(real, torch.rand(4, 4)))


def test_uncertain_labels_are_left_out_as_unknown_ones_are():
    """A prompt file may give CheXpert's -1 (uncertain): it was scored as a third class (AUROC raised on
    [-1, 0, 1]; accuracy counted every -1 row wrong)."""
    from cxr_ldm.evaluation.metrics.conditioned_classification import conditioned_classification

    probs = torch.tensor([[0.9], [0.8], [0.2], [0.1], [0.7]])
    uncertain = torch.tensor([[1.0], [1.0], [0.0], [0.0], [-1.0]])
    unknown = torch.tensor([[1.0], [1.0], [0.0], [0.0], [float("nan")]])
    assert conditioned_classification(probs, uncertain, ["Edema"]) == conditioned_classification(
        probs, unknown, ["Edema"]
    )
    found, _ = conditioned_classification(probs, uncertain, ["Edema"])
    assert found["cond_accuracy/Edema"] == 1.0 and found["cond_auroc/Edema"] == 1.0
    _, skipped = conditioned_classification(probs, torch.full((5, 1), -1.0), ["Edema"])
    assert skipped["cond_accuracy/Edema"] == "no prompt has this label (as 1 or 0)"


def test_a_prompt_file_label_other_than_1_0_or_minus_1_is_refused(tmp_path):
    from cxr_ldm.errors import ConfigError
    from cxr_ldm.generation.prompt_records import read_prompt_file

    path = tmp_path / "prompts.csv"
    path.write_text("prompt,Edema\nedema,-1\nclear,0\n")
    assert [r.labels for r in read_prompt_file(path)] == [{"Edema": -1.0}, {"Edema": 0.0}]
    path.write_text("prompt,Edema\nedema,2\n")
    with pytest.raises(
        ConfigError, match=r"column 'Edema' has '2'; labels are 1, 0, -1 \(uncertain\) or empty"
    ):
        read_prompt_file(path)


def test_fid_and_kid_on_rank_zero_alone_in_a_process_group_equal_one_process(tmp_path):
    """During a DDP fit the `GenerationMetrics` callback computes CXR FID on rank zero alone. torchmetrics
    synced the metric's states over the ranks at `compute`, a collective the other ranks never joined: rank
    zero waited for them (a fit hung, here the group's 30 s timeout). FID and KID of images given whole are
    computed where they are held, with the value of one process."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from _metrics_on_rank_zero import tiny_metrics

    script = Path(__file__).with_name("_metrics_on_rank_zero.py")
    out = tmp_path / "rank0.json"
    ranks = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), "2", str(tmp_path / "group"), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [rank.communicate(timeout=300)[0] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert json.loads(out.read_text()) == pytest.approx(tiny_metrics(), rel=1e-6)
