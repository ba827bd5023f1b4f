"""Finding-balanced training sampling: the weights, and the sampler the datamodule hands to Lightning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from cxr_ldm.data import MimicCxrDataModule
from cxr_ldm.data.finding_balance import finding_balance_weights
from cxr_ldm.labels import CHEXPERT_LABELS

NO_FINDING = CHEXPERT_LABELS.index("No Finding")
PNEUMOTHORAX = CHEXPERT_LABELS.index("Pneumothorax")
EFFUSION = CHEXPERT_LABELS.index("Pleural Effusion")


def _labels(rows: list[list[int]]) -> torch.Tensor:
    labels = torch.zeros(len(rows), len(CHEXPERT_LABELS))
    for row, positives in enumerate(rows):
        labels[row, positives] = 1.0
    return labels


def test_power_one_gives_each_finding_the_same_share() -> None:
    # 8 normal, 2 pneumothorax, 1 with nothing positive at all
    labels = _labels([[NO_FINDING]] * 8 + [[PNEUMOTHORAX]] * 2 + [[]])
    weights = finding_balance_weights(labels, power=1.0)
    shares = [
        float(weights[rows].sum() / weights.sum()) for rows in (slice(0, 8), slice(8, 10), slice(10, 11))
    ]
    assert shares == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert float(weights.mean()) == pytest.approx(1.0)


def test_power_zero_is_uniform_and_rarest_finding_decides() -> None:
    labels = _labels([[NO_FINDING]] * 6 + [[EFFUSION]] * 3 + [[EFFUSION, PNEUMOTHORAX]])
    assert torch.allclose(finding_balance_weights(labels, power=0.0), torch.ones(10))
    weights = finding_balance_weights(labels, power=1.0)
    # the image with effusion and pneumothorax is weighted by pneumothorax, its rarest finding (1 of 10)
    assert float(weights[9] / weights[6]) == pytest.approx(4.0)  # effusion is on 4 images
    uncertain = labels.clone()
    uncertain[0, PNEUMOTHORAX] = -1.0
    uncertain[1, PNEUMOTHORAX] = math.nan
    assert torch.equal(finding_balance_weights(uncertain, 1.0), weights)  # only 1 counts as positive


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="labels must be"):
        finding_balance_weights(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="power"):
        finding_balance_weights(torch.zeros(3, len(CHEXPERT_LABELS)), power=-1.0)
    with pytest.raises(ValueError, match="train_sampling"):
        MimicCxrDataModule(root="x", train_sampling="oversample")


def test_datamodule_draws_rare_findings_more_often(phantom_root: Path, tmp_path: Path) -> None:
    options = dict(
        root=str(phantom_root), views=["PA", "AP"], prompt_mode="labels", split="seeded", image_size=16,
        batch_size=8, num_workers=0, no_finding_cap=None, cache_dir=str(tmp_path), seed=3,
    )  # fmt: skip
    plain = MimicCxrDataModule(**options)
    plain.setup("fit")
    labels = plain.datasets["train"].labels
    counts = (labels == 1).sum(dim=0)
    rare = int(torch.where(counts > 0, counts, len(labels) + 1).argmin())  # the rarest finding present

    balanced = MimicCxrDataModule(**options, train_sampling="finding_balanced")
    balanced.setup("fit")
    loader = balanced.train_dataloader()
    assert isinstance(loader.sampler, WeightedRandomSampler)
    assert loader.sampler.num_samples == len(labels)

    def drawn_share(datamodule: MimicCxrDataModule, epochs: int) -> float:
        hits = total = 0
        for _ in range(epochs):
            for batch in datamodule.train_dataloader():
                hits += int((batch["labels"][:, rare] == 1).sum())
                total += len(batch["labels"])
        return hits / total

    plain_share = float((labels[:, rare] == 1).float().mean())
    assert drawn_share(plain, 1) == pytest.approx(plain_share)
    assert drawn_share(balanced, 4) > 2 * plain_share
    # the same seed draws the same images
    again = MimicCxrDataModule(**options, train_sampling="finding_balanced")
    again.setup("fit")
    first = [b["dicom_id"] for b in balanced.train_dataloader()]
    second = [b["dicom_id"] for b in again.train_dataloader()]
    assert first[0] == second[0]
