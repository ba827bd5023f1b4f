"""Read a DICOM chest X-ray as 8-bit grayscale: modality LUT, VOI LUT/windowing, MONOCHROME1 inversion."""

from __future__ import annotations

import os

import numpy as np

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pragma: no cover - pydicom 2.x
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut


def dicom_to_uint8(dataset) -> np.ndarray:
    """Pixel data of a pydicom Dataset as a 2-D uint8 array, bright = dense (bone white).

    12/16-bit data is windowed by the file's VOI LUT or window centre/width when present, then scaled
    linearly from its own min..max to 0..255 so every file uses the full 8-bit range.
    """
    pixels = dataset.pixel_array
    if getattr(dataset, "SamplesPerPixel", 1) != 1:
        pixels = pixels.mean(axis=-1)
    elif pixels.ndim == 3:  # multi-frame: the first frame
        pixels = pixels[0]
    pixels = apply_modality_lut(pixels, dataset)
    pixels = apply_voi_lut(pixels, dataset)
    pixels = np.asarray(pixels, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    if str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def read_dicom_uint8(path: str | os.PathLike) -> np.ndarray:
    """Read a .dcm file and return its image as uint8 (see `dicom_to_uint8`)."""
    import pydicom

    return dicom_to_uint8(pydicom.dcmread(path))
