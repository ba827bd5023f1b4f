"""Decode X-ray images fast and make them square at the training size.

Full-size MIMIC-CXR JPEGs are about 2500 x 3000 px; decoding them whole and then shrinking dominates data
loading. `Image.draft` makes the JPEG decoder scale by 1/2, 1/4 or 1/8 in the DCT domain, so only the
pixels needed for the target size are produced; a small bilinear resize finishes the job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from cxr_ldm.data.bad_samples import BadSampleError

ResizePolicy = Literal["pad", "center_crop"]
RESIZE_POLICIES: tuple[str, ...] = ("pad", "center_crop")
DICOM_SUFFIXES = {".dcm", ".dicom"}


def _scaled_size(width: int, height: int, size: int, resize: ResizePolicy) -> tuple[int, int]:
    """Size of the image once its longer (pad) or shorter (center_crop) side equals `size`."""
    side = max(width, height) if resize == "pad" else min(width, height)
    scale = size / side
    return max(1, round(width * scale)), max(1, round(height * scale))


def square_image(image: Image.Image, size: int, resize: ResizePolicy = "pad") -> Image.Image:
    """Make a grayscale image `size` x `size`: letterbox with black (pad) or crop the centre."""
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
    width, height = image.size
    if resize == "center_crop":
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    new_w, new_h = _scaled_size(width, height, size, "pad")
    resized = (
        image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        if (new_w, new_h) != (width, height)
        else image
    )
    if (new_w, new_h) == (size, size):
        return resized
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def _open_raster(path: Path, size: int, resize: ResizePolicy) -> Image.Image:
    with Image.open(path) as image:
        if image.format == "JPEG":
            # The decoder picks the largest DCT scale that keeps both sides >= the requested size.
            image.draft("L", _scaled_size(image.width, image.height, size, resize))
        gray = image.convert("L")
        gray.load()
        return gray


def load_gray(path: str | os.PathLike, size: int, resize: ResizePolicy = "pad") -> np.ndarray:
    """Read a .jpg/.png or .dcm file as a square uint8 array of side `size`.

    Any decode failure becomes a BadSampleError naming the file, so the caller's bad-sample policy applies.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            from cxr_ldm.data.dicom import read_dicom_uint8

            image = Image.fromarray(read_dicom_uint8(path), mode="L")
        else:
            image = _open_raster(path, size, resize)
        return np.asarray(square_image(image, size, resize), dtype=np.uint8)
    except FileNotFoundError as error:
        raise BadSampleError(path, "file not found", "image") from error
    except BadSampleError:
        raise
    except Exception as error:  # PIL and pydicom raise many types for broken files
        raise BadSampleError(
            path, f"cannot decode image ({type(error).__name__}: {error})", "image"
        ) from error


def to_model_tensor(gray: np.ndarray, channels: int = 3) -> torch.Tensor:
    """uint8 (H, W) -> float32 (C, H, W) in [-1, 1], grayscale repeated over `channels`."""
    scaled = np.asarray(gray, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
    tensor = torch.from_numpy(scaled)
    return tensor.unsqueeze(0).expand(channels, -1, -1).contiguous()
