"""Images: draft decode, square policies, DICOM input, the batch contract, the image cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_tree import small_studies, write_tree

from cxr_ldm.data import MimicCxrDataModule
from cxr_ldm.data.image_io import load_gray, square_image, to_model_tensor


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("mimic"), small_studies(), size=(60, 80))


def test_square_policies() -> None:
    tall = Image.fromarray(np.full((80, 40), 200, np.uint8))
    padded = np.asarray(square_image(tall, 20, "pad"))
    assert padded.shape == (20, 20)
    assert padded[:, :5].max() == 0 and padded[:, 5:15].min() > 150  # black letterbox left and right
    cropped = np.asarray(square_image(tall, 20, "center_crop"))
    assert cropped.shape == (20, 20) and cropped.min() > 150


def test_draft_decode_matches_full_decode(tmp_path: Path) -> None:
    y, x = np.mgrid[0:1200, 0:1000]
    pixels = (127 + 100 * np.sin(x / 90.0) * np.cos(y / 70.0)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=95)
    fast = load_gray(tmp_path / "big.jpg", 128, "pad").astype(float)
    with Image.open(tmp_path / "big.jpg") as image:
        slow = np.asarray(square_image(image.convert("L"), 128, "pad")).astype(float)
    assert fast.shape == (128, 128)
    assert np.abs(fast - slow).mean() < 3.0


def test_tensor_range_and_channels() -> None:
    gray = np.array([[0, 255], [128, 64]], np.uint8)
    tensor = to_model_tensor(gray, 3)
    assert tensor.shape == (3, 2, 2) and tensor.dtype == torch.float32
    assert tensor.min() == -1.0 and tensor.max() == 1.0
    assert to_model_tensor(gray, 1).shape == (1, 2, 2)


def _dicom(path: Path, pixels: np.ndarray, photometric: str, window: tuple[int, int] | None = None) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_monochrome1_voi_and_12_bit(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 4095, 32), (24, 1)).astype(np.uint16)
    _dicom(tmp_path / "m2.dcm", ramp, "MONOCHROME2")
    _dicom(tmp_path / "m1.dcm", ramp, "MONOCHROME1")
    m2 = load_gray(tmp_path / "m2.dcm", 32, "pad")
    m1 = load_gray(tmp_path / "m1.dcm", 32, "pad")
    rows = slice(8, 24)  # inside the 24-row image letterboxed into 32
    assert m2[rows, 0].max() < 10 and m2[rows, -1].min() > 245  # full 12-bit range scaled to 8 bits
    assert m1[rows, 0].min() > 245 and m1[rows, -1].max() < 10  # MONOCHROME1 inverted
    _dicom(tmp_path / "win.dcm", ramp, "MONOCHROME2", window=(1024, 512))
    windowed = load_gray(tmp_path / "win.dcm", 32, "pad")[16]
    # Only the columns inside the window [768, 1280] get intermediate grey values.
    middle = np.flatnonzero((windowed > 20) & (windowed < 235))
    assert 0 < len(middle) <= 6 and ramp[0, middle].min() >= 600 and ramp[0, middle].max() <= 1400


@pytest.mark.parametrize(("channels", "resize"), [(3, "pad"), (1, "center_crop")])
def test_batches_follow_the_contract(tree: Path, tmp_path: Path, channels: int, resize: str) -> None:
    datamodule = MimicCxrDataModule(
        root=str(tree), cache_dir=str(tmp_path), image_size=32, channels=channels, resize=resize,
        batch_size=3, num_workers=0, views=["PA", "AP", "LATERAL"],
    )  # fmt: skip
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert (
        batch["pixel_values"].shape == (3, channels, 32, 32) and batch["pixel_values"].dtype == torch.float32
    )
    assert batch["pixel_values"].min() >= -1.0 and batch["pixel_values"].max() <= 1.0
    assert batch["labels"].shape == (3, 14) and batch["labels"].dtype == torch.float32
    assert isinstance(batch["prompt"], list) and all(isinstance(p, str) and p for p in batch["prompt"])
    assert isinstance(batch["dicom_id"], list) and isinstance(batch["view"], list)
    assert batch["study_id"].dtype == torch.int64 and batch["subject_id"].dtype == torch.int64
    assert len(datamodule.val_dataloader().dataset) == 2  # study 4's PA and LL
    assert len(datamodule.test_dataloader().dataset) == 1  # study 5's AP
    total = sum(len(datamodule.datasets[s]) for s in ("train", "validate", "test"))
    assert total == len(datamodule.index)


def test_image_cache_gives_the_same_pixels(tree: Path, tmp_path: Path) -> None:
    options = {"root": str(tree), "cache_dir": str(tmp_path), "image_size": 24, "num_workers": 0}
    plain = MimicCxrDataModule(**options)
    cached = MimicCxrDataModule(**options, image_cache=True)
    plain.setup("fit")
    cached.prepare_data()
    assert (cached.image_cache_folder() / "images.npy").is_file()
    cached.setup("fit")
    for split in ("train", "validate"):
        for i in range(len(plain.datasets[split])):
            a, b = plain.datasets[split][i], cached.datasets[split][i]
            assert a["dicom_id"] == b["dicom_id"]
            assert torch.equal(a["pixel_values"], b["pixel_values"])
    assert (
        cached.image_cache_folder()
        != MimicCxrDataModule(**{**options, "image_size": 16}).image_cache_folder()
    )
