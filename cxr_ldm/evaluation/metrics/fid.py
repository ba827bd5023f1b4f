"""FID on evaluator (torchxrayvision DenseNet `features2`) features, and on InceptionV3 when its weights exist."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.metrics.features import ClassifierFeatures


def _two_each(real: torch.Tensor, fake: torch.Tensor, what: str) -> None:
    """FID and KID compare two distributions: each needs at least two samples (a covariance, a pair)."""
    if len(real) < 2 or len(fake) < 2:
        raise ConfigError(
            f"{what} needs at least two real and two generated images (got {len(real)} real, {len(fake)} "
            "generated); give more prompts or samples per prompt (--limit, --per-prompt)"
        )


def _update(metric, images01: torch.Tensor, real: bool, batch_size: int = 64) -> None:
    for i in range(0, len(images01), batch_size):
        metric.update(images01[i : i + batch_size], real=real)


def fid_classifier(real01: torch.Tensor, fake01: torch.Tensor, classifier) -> float:
    """Frechet distance between the evaluator features of real and generated images (lower = closer).

    The images are given whole: the metric is computed in this process, never synced over the ranks of a
    process group (rank zero alone computes it in a DDP fit, where a sync would wait for the other ranks).
    """
    _two_each(real01, fake01, "FID")
    metric = FrechetInceptionDistance(
        feature=ClassifierFeatures(classifier), normalize=True, sync_on_compute=False
    )
    _update(metric, real01, True)
    _update(metric, fake01, False)
    return float(metric.compute())


def kid_classifier(
    real01: torch.Tensor, fake01: torch.Tensor, classifier, subsets: int = 20, seed: int = 0
) -> float:
    """Kernel distance on the same features; unbiased, so it suits small sets better than FID.

    The random subsets are drawn from `seed`, so the same images give the same number on every run. Computed
    in this process, as `fid_classifier`.
    """
    _two_each(real01, fake01, "KID")
    size = min(len(real01), len(fake01), 100)
    metric = KernelInceptionDistance(
        feature=ClassifierFeatures(classifier),
        normalize=True,
        subsets=subsets,
        subset_size=size,
        sync_on_compute=False,
    )
    _update(metric, real01, True)
    _update(metric, fake01, False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return float(metric.compute()[0])


def check_inception_weights(weights_path: str | Path) -> None:
    """What `fid_inception` needs, checked before any image is drawn or read: the weights file
    (`--inception-weights`) and the torch-fidelity package, whose InceptionV3 reads it."""
    if not Path(weights_path).is_file():
        raise ConfigError(f"--inception-weights {weights_path} does not exist (or is not a file)")
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ConfigError(
            f"--inception-weights {weights_path}: InceptionV3 FID needs the torch-fidelity package, which is "
            "not installed; install it (pip install torch-fidelity), or leave out --inception-weights "
            "(fid_inception is then listed as skipped)"
        )


def fid_inception(real01: torch.Tensor, fake01: torch.Tensor, weights_path: str | Path) -> float:
    """InceptionV3 FID from a local weights file (torch-fidelity's `pt_inception-2015-12-05` file).

    Grayscale images are repeated to 3 channels and converted to uint8 as the reference code expects.
    """
    check_inception_weights(weights_path)
    metric = FrechetInceptionDistance(  # computed in this process, as `fid_classifier`
        feature=2048,
        normalize=True,
        feature_extractor_weights_path=str(weights_path),
        sync_on_compute=False,
    )
    _update(metric, real01.expand(-1, 3, -1, -1), True)
    _update(metric, fake01.expand(-1, 3, -1, -1), False)
    return float(metric.compute())


class PrecomputedFeatures(torch.nn.Module):
    """Identity "feature extractor" for torchmetrics: feature vectors computed before (e.g. on other ranks)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.double()


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between two sets of feature vectors (N, D), computed where it is called (no DDP sync)."""
    _two_each(real, fake, "FID")
    metric = FrechetInceptionDistance(
        feature=PrecomputedFeatures(real.shape[1]), normalize=True, sync_on_compute=False
    )
    _update(metric, real, True)
    _update(metric, fake, False)
    return float(metric.compute())


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, subsets: int = 20, seed: int = 0) -> float:
    """Kernel distance between two sets of feature vectors, subsets drawn from `seed` (as `kid_classifier`)."""
    _two_each(real, fake, "KID")
    size = min(len(real), len(fake), 100)
    metric = KernelInceptionDistance(
        feature=PrecomputedFeatures(real.shape[1]),
        normalize=True,
        subsets=subsets,
        subset_size=size,
        sync_on_compute=False,
    )
    _update(metric, real, True)
    _update(metric, fake, False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return float(metric.compute()[0])
