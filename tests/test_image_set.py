"""`ImageSet` (uint8 in memory, float only through `pixels01` / `pixels`) and its two readers: a generated
folder (`read_generated`) and a data module's split (`read_split`), checked against the files read directly."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cxr_ldm.data.image_io import load_gray
from cxr_ldm.data.image_set import ImageSet, ImageSetDataset, to_uint8
from cxr_ldm.data.real_split import read_split
from cxr_ldm.errors import ConfigError
from cxr_ldm.generation.generated_folder import GenerationSettings, metadata_text, read_generated, save_png
from cxr_ldm.generation.prompt_records import PromptRecord
from cxr_ldm.labels import CHEXPERT_LABELS
from cxr_ldm.training.datamodule import load_datamodule


def image_set(values: list[int], side: int = 2, prompts=None, prompt_index=None, reports=None) -> ImageSet:
    images = (
        torch.tensor(values, dtype=torch.uint8)[:, None, None, None].expand(-1, 1, side, side).contiguous()
    )
    labels = torch.full((len(values), len(CHEXPERT_LABELS)), float("nan"))
    labels[:, 0] = torch.arange(len(values), dtype=torch.float32)
    prompts = prompts or [f"p{i}" for i in range(len(values))]
    return ImageSet(images, labels, prompts, [f"id{i}" for i in range(len(values))], prompt_index, reports)


def test_pixels01_and_pixels_span_their_ranges_and_leave_the_uint8_images_alone():
    data = image_set([0, 1, 128, 254, 255])
    before = data.images.clone()
    p01, p = data.pixels01(), data.pixels()
    assert p01.dtype == p.dtype == torch.float32 and p01.shape == p.shape == (5, 1, 2, 2)
    assert p01.min() == 0.0 and p01.max() == 1.0 and p.min() == -1.0 and p.max() == 1.0
    assert torch.allclose(p01[:, 0, 0, 0], torch.tensor([0, 1, 128, 254, 255]) / 255.0)
    assert torch.allclose(p, p01 * 2 - 1, atol=1e-6)
    assert torch.equal(data.images, before) and data.images.dtype == torch.uint8
    assert torch.equal(to_uint8(p), data.images)  # [-1, 1] -> uint8 is the exact inverse
    assert torch.equal(to_uint8(p.expand(-1, 3, -1, -1)), data.images)  # three channels -> one
    assert torch.equal(to_uint8(torch.tensor([-3.0, 3.0]).view(2, 1, 1, 1)).flatten(), torch.tensor([0, 255]))
    item = ImageSetDataset(data)[2]
    assert torch.equal(item["pixel_values"], p[2])
    assert torch.allclose(item["labels"], data.labels[2], equal_nan=True)


def test_an_image_set_refuses_float_images_and_ragged_fields():
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(torch.rand(2, 1, 4, 4), torch.zeros(2, 14), ["a", "b"], ["1", "2"])
    with pytest.raises(ValueError, match="prompts"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, 14), ["a"], ["1", "2"])


def test_take_and_concat_keep_rows_together():
    a = image_set([10, 20, 30], prompt_index=[0, 0, 1], reports=["r0", "r1", "r2"])
    b = image_set([40, 50], prompts=["q0", "q1"], prompt_index=[0, 1], reports=["s0", "s1"])
    picked = a.take([2, 0])
    assert picked.images[:, 0, 0, 0].tolist() == [30, 10] and picked.labels[:, 0].tolist() == [2.0, 0.0]
    assert picked.prompts == ["p2", "p0"] and picked.ids == ["id2", "id0"]
    assert picked.prompt_index == [1, 0] and picked.reports == ["r2", "r0"]
    both = ImageSet.concat([a, b])
    assert len(both) == 5 and both.images.dtype == torch.uint8
    assert both.images[:, 0, 0, 0].tolist() == [10, 20, 30, 40, 50]
    assert both.prompts == ["p0", "p1", "p2", "q0", "q1"] and both.ids == ["id0", "id1", "id2", "id0", "id1"]
    assert both.prompt_index == [0, 0, 1, 2, 3]  # b's prompts stay apart from a's
    assert both.reports == ["r0", "r1", "r2", "s0", "s1"]
    mixed = ImageSet.concat([a, image_set([60])])
    assert mixed.prompt_index is None and mixed.reports is None and len(mixed) == 4


RECORDS = [
    PromptRecord("left effusion", {"Pleural Effusion": 1.0, "Edema": 0.0}),
    PromptRecord("", {}),
    PromptRecord("normal", {"No Finding": 1.0, "Edema": -1.0}),
]


@pytest.fixture
def generated(tmp_path) -> Path:
    """3 prompts x 3 samples, images of two sizes (32 and 40 px), written as `generate_images` writes them."""
    settings = GenerationSettings(per_prompt=3)
    rng = np.random.default_rng(0)
    for i in range(len(RECORDS) * settings.per_prompt):
        side = 40 if i % 2 else 32
        save_png(
            torch.from_numpy(rng.random((3, side, side), dtype=np.float32)), tmp_path / f"images/{i:06d}.png"
        )
    (tmp_path / "metadata.csv").write_text(metadata_text(RECORDS, settings))
    return tmp_path


def png_at(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        gray = image.convert("L")
        return np.asarray(gray if gray.size == (size, size) else gray.resize((size, size), Image.BICUBIC))


@pytest.mark.parametrize("per_prompt", [1, 2, 3])
def test_read_generated_gives_the_pngs_labels_and_groups_of_the_folder(generated, per_prompt):
    rows = [
        row
        for row in csv.DictReader((generated / "metadata.csv").open())
        if int(row["sample_index"]) < per_prompt
    ]
    found = read_generated(generated, per_prompt=per_prompt, image_size=32)
    assert len(found) == 3 * per_prompt and found.images.dtype == torch.uint8
    assert found.images.shape == (3 * per_prompt, 1, 32, 32)
    for i, row in enumerate(rows):
        assert np.array_equal(found.images[i, 0].numpy(), png_at(generated / row["file_name"], 32))
        expected = [float(row[n]) if row[n] != "" else math.nan for n in CHEXPERT_LABELS]
        assert np.allclose(found.labels[i].numpy(), expected, equal_nan=True)
    assert found.prompts == [row["prompt"] for row in rows]  # the empty prompt stays empty
    assert found.ids == [row["file_name"] for row in rows]
    assert found.prompt_index == [i // per_prompt for i in range(3 * per_prompt)]
    assert torch.allclose(
        found.pixels01()[1, 0], torch.tensor(png_at(generated / rows[1]["file_name"], 32)) / 255
    )


def test_read_generated_keeps_the_first_rows_and_sizes_without_image_size(generated, tmp_path):
    found = read_generated(generated, image_size=40, limit=4)
    assert found.images.shape == (4, 1, 40, 40) and found.prompt_index == [0, 0, 0, 1]
    plain = tmp_path / "plain"
    plain.mkdir()
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).save(plain / "a.png")
    Image.fromarray(np.full((8, 8), 7, dtype=np.uint8)).save(plain / "b.png")
    (plain / "metadata.csv").write_text("file_name,prompt\na.png,x\nb.png,y\n")
    found = read_generated(plain, per_prompt=1)  # no sample_index: every row
    assert found.images[:, 0, 0, 0].tolist() == [200, 7] and found.prompt_index == [0, 1]
    assert torch.isnan(found.labels).all()


def test_read_generated_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(
        ConfigError, match=r"--generated .* has no metadata.csv; run `python -m cxr_ldm generate"
    ):
        read_generated(tmp_path)
    (tmp_path / "metadata.csv").write_text("file_name,caption\na.png,x\n")
    with pytest.raises(ConfigError, match=r"lacks the column\(s\) \['prompt'\]"):
        read_generated(tmp_path)


@pytest.fixture(scope="module")
def datamodule_yaml(phantom_root, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("split")
    config = {
        "class_path": "cxr_ldm.data.MimicCxrDataModule",
        "init_args": {
            "root": str(phantom_root), "cache_dir": str(work / "cache"), "views": ["PA", "AP"],
            "max_chars": None, "no_finding_cap": None, "split": "seeded", "split_ratios": [0.6, 0.2, 0.2],
            "image_size": 48, "channels": 3, "batch_size": 8, "num_workers": 0,
        },
    }  # fmt: skip
    path = work / "data.yaml"
    path.write_text(yaml.safe_dump({"data": config}))
    return path


@pytest.mark.parametrize("limit", [None, 7])
def test_read_split_gives_the_split_images_labels_and_reports(datamodule_yaml, limit):
    module = load_datamodule(datamodule_yaml)
    found = read_split(module, "test", limit, seed=3)
    dataset = module.datasets["test"]
    rows = list(range(len(dataset)))
    if limit is not None:
        rows = sorted(np.random.default_rng(3).choice(len(dataset), limit, replace=False).tolist())
    assert (
        len(found) == len(rows)
        and found.images.shape[1:] == (1, 48, 48)
        and found.images.dtype == torch.uint8
    )
    for i, row in enumerate(rows):
        expected = load_gray(dataset.images_dir / dataset.paths[row], 48, dataset.resize)
        assert np.array_equal(found.images[i, 0].numpy(), expected)
    assert torch.allclose(found.labels, dataset.labels[rows], equal_nan=True)
    assert found.prompts == [dataset.prompts[r] for r in rows]
    assert found.ids == [dataset.dicom_ids[r] for r in rows]
    sections = module.index[module.index["split"] == "test"]["section"].astype(str).tolist()
    assert found.reports == [sections[r] for r in rows]
    assert found.prompt_index is None


class EmptySplits:
    """A data module whose test split holds no images."""

    datasets = {"train": [1], "test": []}

    def setup(self, stage=None) -> None:
        pass


def test_read_split_refuses_an_unknown_or_empty_split():
    with pytest.raises(
        ConfigError, match=r"test_split: 'valid' is not a split of the data module \(\['test', 'train'\]\)"
    ):
        read_split(EmptySplits(), "valid", key="test_split")
    with pytest.raises(ConfigError, match="the 'test' split of the data is empty"):
        read_split(EmptySplits(), "test")


def test_generate_from_an_empty_split_is_refused_by_name(datamodule_yaml, tmp_path, capsys):
    """A split that the data options leave empty wrote no image and said `wrote 0 images` with exit status 0."""
    from cxr_ldm.commands.generate import main

    config = yaml.safe_load(datamodule_yaml.read_text())
    config["data"]["init_args"]["max_images"] = {"test": 0}
    emptied = tmp_path / "data.yaml"
    emptied.write_text(yaml.safe_dump(config))
    args = [
        "--model",
        str(tmp_path / "model.ckpt"),
        "--data-config",
        str(emptied),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main([*args, "--split", "test"]) == 2
    assert "--split test: the data module's test split holds no image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
