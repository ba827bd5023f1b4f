"""Turn a study's anatomy and findings into 8-bit radiographs of any size."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cxr_ldm.phantom.anatomy import Anatomy, Grid, frontal_layers, lateral_layers
from cxr_ldm.phantom.devices import draw_devices
from cxr_ldm.phantom.findings import Finding
from cxr_ldm.phantom.pathology import apply_frontal, apply_lateral, heart_ratio, mediastinum_scale

# Anatomy is drawn at most this wide and resized up: findings are smooth, so detail costs time, not realism.
MAX_RENDER_WIDTH = 512
MIN_RENDER_WIDTH = 128
# Above 192 px the anatomy is drawn at this fraction of the output width and resized up; fine noise is added
# at full size, so the drawing cost grows slower than the pixel count.
RENDER_SCALE = 0.75

FRONTAL_VIEWS = {"PA", "AP", "AP AXIAL", "PA LLD", "PA RLD", "AP LLD", "AP RLD", "LAO", "RAO", "SWIMMERS"}


def _noise_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field: a small random grid resized up bicubically."""
    h, w = shape
    small = rng.standard_normal((max(2, cells * h // max(w, 1)), cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC))


def render_image(
    anatomy: Anatomy,
    findings: list[Finding],
    view: str,
    width: int,
    height: int,
    seed: int,
) -> np.ndarray:
    """One image as uint8 (height, width); the same arguments always give the same pixels."""
    rng = np.random.default_rng(seed)
    rw = int(min(max(round(width * RENDER_SCALE), MIN_RENDER_WIDTH, min(width, 192)), MAX_RENDER_WIDTH))
    rh = max(1, round(height * rw / width))
    zoom = float(rng.uniform(0.97, 1.07))
    grid = Grid.fit(rw, rh, zoom=zoom)
    inspiration = float(rng.normal(0.0, 0.012))
    ctr = heart_ratio(anatomy, findings)
    frontal = view in FRONTAL_VIEWS or view not in {"LATERAL", "LL", "XTABLE LATERAL"}
    if frontal:
        ap = view.startswith("AP")
        geo, layers = frontal_layers(
            anatomy,
            grid,
            rng,
            ap=ap,
            ctr=ctr,
            mediastinum_scale=mediastinum_scale(findings),
            fracture=_fracture(findings, rng),
            inspiration=inspiration,
        )
        apply_frontal(geo, layers, findings, rng)
    else:
        geo, layers = lateral_layers(anatomy, grid, rng, ctr=ctr, inspiration=inspiration)
        apply_lateral(geo, layers, findings, rng)
    draw_devices(geo, layers, findings, rng)
    density = layers.density()
    density = density + 0.035 * _noise_field(rng, density.shape, 6)
    ap_like = view.startswith("AP")
    lo = float(rng.uniform(-0.1, -0.02))
    hi = float(rng.uniform(1.3, 1.5)) + (0.1 if ap_like else 0.0)
    gamma = float(rng.uniform(0.9, 1.2))
    img = np.clip((density - lo) / (hi - lo), 0.0, 1.0) ** gamma
    if ap_like:
        img = 0.08 + 0.86 * img
    pil = Image.fromarray(img.astype(np.float32), mode="F")
    angle = anatomy.rotation + float(rng.normal(0.0, 0.8))
    if abs(angle) > 0.05:
        pil = pil.rotate(angle, resample=Image.BILINEAR, fillcolor=0.0)
    if (rw, rh) != (width, height):
        pil = pil.resize((width, height), Image.BICUBIC if width > rw else Image.LANCZOS)
    out = np.asarray(pil, dtype=np.float32)
    out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(0.012 if not ap_like else 0.02)
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _fracture(findings: list[Finding], rng: np.random.Generator) -> tuple[str, float, float] | None:
    for f in findings:
        if f.name == "Fracture":
            return (f.side or "right", float(rng.integers(3, 8)), float(rng.uniform(0.6, 0.9)))
    return None
