"""Draw each finding into the density layers, with strength that depends on its attributes.

Uncertain (-1.0) findings are drawn faintly, as a radiologist would hedge on them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cxr_ldm.phantom.anatomy import SIDES, Frontal, Lateral, Layers, ramp, side_sign
from cxr_ldm.phantom.findings import LOBE_ZONE, Finding

EFFUSION_HEIGHT = {
    "small": 0.085,
    "moderate": 0.24,
    "large": 0.42,
}  # fraction of lung height above the sulcus
PNEUMOTHORAX_SHRINK = {"small": 0.80, "moderate": 0.66, "large": 0.48}  # collapsed lung's linear scale
EDEMA_STRENGTH = {"mild": 0.22, "moderate": 0.34, "severe": 0.48}
ATELECTASIS_STRENGTH = {"minimal": 0.22, "mild": 0.32, "moderate": 0.45}


def heart_ratio(anatomy, findings: list[Finding]) -> float:
    """Cardiothoracic ratio to draw: the patient's own unless Cardiomegaly sets one."""
    for f in findings:
        if f.name == "Cardiomegaly" and f.detail.startswith("ratio="):
            return float(f.detail.split("=", 1)[1])
    return anatomy.ctr


def mediastinum_scale(findings: list[Finding]) -> float:
    for f in findings:
        if f.name == "Enlarged Cardiomediastinum":
            return 1.55 if f.label > 0 else 1.3
    return 1.0


def _sides(side: str) -> tuple[str, ...]:
    return SIDES if side in ("bilateral", "") else (side,)


def _blob_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int = 10) -> np.ndarray:
    h, w = shape
    small = rng.random((max(2, cells * h // w), cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC))


def apply_frontal(geo: Frontal, layers: Layers, findings: list[Finding], rng: np.random.Generator) -> None:
    """Edit a frontal view's layers in place, one finding at a time."""
    lungs0 = {s: layers.lungs[s].copy() for s in SIDES}
    opacity = np.zeros(layers.grid.shape, dtype=np.float32)
    drawn_patches: set[str] = set()
    for f in findings:
        k = 1.0 if f.label > 0 else 0.6
        if f.name == "Pleural Effusion":
            for side in _sides(f.side):
                _effusion(geo, layers, side, f.size, k, opacity)
        elif f.name == "Pneumothorax":
            _pneumothorax(geo, layers, f.side or "right", f.size, k, lungs0)
        elif f.name in ("Consolidation", "Lung Opacity", "Pneumonia"):
            if f.location in drawn_patches:
                continue
            drawn_patches.add(f.location)
            strength = 0.55 if f.name == "Consolidation" else 0.42
            _patch(geo, layers, f.side, LOBE_ZONE.get(f.location, "lower"), strength * k, rng, opacity)
        elif f.name == "Edema":
            _edema(geo, layers, EDEMA_STRENGTH.get(f.size, 0.3) * k, rng, opacity, lungs0)
        elif f.name == "Atelectasis":
            for side in _sides(f.side):
                _atelectasis(geo, layers, side, ATELECTASIS_STRENGTH.get(f.size, 0.3) * k, rng, opacity)
        elif f.name == "Lung Lesion":
            _lesion(geo, layers, f, k, rng, opacity, lungs0)
        elif f.name == "Pleural Other":
            for side in _sides(f.side):
                _pleural_thickening(geo, layers, side, k, opacity)
    layers.opacity = layers.opacity + opacity


def _effusion(geo: Frontal, layers: Layers, side: str, size: str, k: float, opacity: np.ndarray) -> None:
    """Dependent fluid: fills the costophrenic angle first, climbs the lateral wall as a meniscus."""
    g = geo.g
    lung_h = geo.cp[side] - geo.a.apex
    height = EFFUSION_HEIGHT.get(size, 0.1) * lung_h * (0.75 if k < 1 else 1.0)
    s = geo.s(side)
    u = np.clip(s / geo.T, 0, 1.2)
    meniscus = (0.035 + 0.25 * height) * u**2
    level = geo.cp[side] - height - meniscus
    fluid = ramp(g.y - level, 0.018 + 0.1 * height)
    region = geo.lung(side, eps=geo.eps)
    # a veil over the hemithorax on supine films, fluid layering posteriorly
    veil = 0.0
    if geo.ap:
        veil = 0.25 * k * ramp(g.y - (geo.cp[side] - 2.2 * height), 0.15) * region
    fill = np.clip(fluid * region * k * 0.97 + veil, 0, 1)
    layers.lungs[side] = layers.lungs[side] * (1 - fill)
    layers.markings = layers.markings * (1 - fill)
    opacity += (0.10 * fill * ramp(s - geo.a.mediastinum, 0.01)).astype(np.float32)


def _pneumothorax(geo: Frontal, layers: Layers, side: str, size: str, k: float, lungs0) -> None:
    """Lung collapses towards the hilum: a thin pleural line, and outside it air with no lung markings."""
    g = geo.g
    scale = PNEUMOTHORAX_SHRINK.get(size, 0.75)
    if k < 1:
        scale = 0.5 * (scale + 1.0) + 0.04
    hx, hy = geo.hilum[side]
    ax, ay = hx - side_sign(side) * 0.02, hy + 0.12
    xs = ax + (g.x - ax) / scale
    ys = ay + (g.y - ay) / scale
    collapsed = geo.lung(side, x=xs, y=ys, eps=geo.eps * 0.8)
    full = lungs0[side]
    rim = np.clip(full - collapsed, 0, 1)
    line = np.clip(4 * collapsed * (1 - collapsed), 0, 1) * full
    # space between the chest wall and the pleural line holds pure air: darker, no markings
    layers.air_gain[side] = 1.0 + 0.35 * k * rim - 0.25 * k * collapsed * full
    layers.markings = layers.markings * (1 - rim)
    layers.opacity = layers.opacity + 0.22 * k * line


def _patch(
    geo: Frontal, layers: Layers, side: str, zone: str, strength: float, rng: np.random.Generator, opacity
) -> None:
    """Airspace opacity filling part of a lobe, with patchy edges."""
    g = geo.g
    side = side if side in SIDES else "right"
    lung = layers.lungs[side]
    z = geo.zone(side, zone)
    lat = geo.lateral_edge(side, g.y)
    cx_s = float(rng.uniform(0.35, 0.7)) * geo.T
    top, bottom = geo.a.apex, geo.cp[side]
    cy = {"upper": 0.25, "middle": 0.5, "lower": 0.78}[zone] * (bottom - top) + top
    r = np.sqrt(((geo.s(side) - cx_s) / (0.16 + 0.0 * lat)) ** 2 + ((g.y - cy) / 0.14) ** 2)
    noise = _blob_noise(rng, g.shape, 14)
    patch = np.clip((1.25 - r) * 1.6 + (noise - 0.5) * 1.4, 0, 1) * z
    fill = np.clip(patch * strength * 1.5, 0, 0.85)
    layers.lungs[side] = lung * (1 - fill)
    opacity += (0.12 * patch * strength * lung).astype(np.float32)


def _edema(geo: Frontal, layers: Layers, strength: float, rng: np.random.Generator, opacity, lungs0) -> None:
    """Bilateral perihilar haze that blurs the vessels: 'bat wings'."""
    g = geo.g
    noise = _blob_noise(rng, g.shape, 24)
    for side in SIDES:
        hx, hy = geo.hilum[side]
        r = np.sqrt(((g.x - hx) / 0.19) ** 2 + ((g.y - hy - 0.04) / 0.26) ** 2)
        haze = np.exp(-(r**2) * 1.4) * (0.75 + 0.5 * noise)
        fill = np.clip(haze * strength * 1.6, 0, 0.8) * lungs0[side]
        layers.lungs[side] = layers.lungs[side] * (1 - fill)
        opacity += (0.06 * fill).astype(np.float32)
    layers.markings = layers.markings * (1 - 0.6 * min(strength * 2, 1.0))


def _atelectasis(
    geo: Frontal, layers: Layers, side: str, strength: float, rng: np.random.Generator, opacity
) -> None:
    """Plate-like band at the lung base, slightly oblique."""
    g = geo.g
    s = geo.s(side)
    y0 = geo.dome[side] - float(rng.uniform(0.04, 0.09))
    tilt = float(rng.uniform(-0.08, 0.08))
    d = np.abs(g.y - (y0 + tilt * (s - 0.5 * geo.T)))
    band = (
        ramp(0.016 + 0.02 * strength - d, 0.012) * ramp(s - 0.2 * geo.T, 0.03) * ramp(0.85 * geo.T - s, 0.05)
    )
    base = ramp(g.y - (geo.dome[side] - 0.05), 0.05) * 0.5
    fill = np.clip((band + base) * strength * 1.8, 0, 0.85) * (s > 0)
    layers.lungs[side] = layers.lungs[side] * (1 - fill)
    opacity += (0.05 * fill).astype(np.float32)


def _lesion(geo: Frontal, layers: Layers, f: Finding, k: float, rng, opacity, lungs0) -> None:
    g = geo.g
    side = f.side if f.side in SIDES else "right"
    mm = float(f.size.split()[0]) if f.size else 15.0
    radius = mm / 1000.0 * 1.05  # the frame is about a metre of patient across
    zone = LOBE_ZONE.get(f.location, "middle")
    top, bottom = geo.a.apex, geo.cp[side]
    cy = {"upper": 0.28, "middle": 0.5, "lower": 0.72}[zone] * (bottom - top) + top
    cx = geo.a.mid + side_sign(side) * float(rng.uniform(0.4, 0.7)) * geo.T
    angle = np.arctan2(g.y - cy, g.x - cx)
    lobulation = 1.0 + (0.12 * np.sin(5 * angle + rng.uniform(0, 6)) if f.detail == "mass" else 0.0)
    r = np.sqrt((g.x - cx) ** 2 + (g.y - cy) ** 2) / (radius * lobulation)
    disk = ramp((1 - r) * radius, geo.eps) * k
    layers.lungs[side] = layers.lungs[side] * (1 - 0.9 * disk)
    opacity += (0.12 * disk).astype(np.float32)


def _pleural_thickening(geo: Frontal, layers: Layers, side: str, k: float, opacity) -> None:
    g = geo.g
    s = geo.s(side)
    lat = geo.lateral_edge(side, g.y)
    band = ramp(s - (lat - 0.025), 0.01) * ramp(0.6 - g.y, 0.1) * ramp(g.y - 0.2, 0.05)
    fill = np.clip(band * k, 0, 0.9) * layers.lungs[side]
    layers.lungs[side] = layers.lungs[side] * (1 - fill)
    opacity += (0.1 * fill).astype(np.float32)


def apply_lateral(geo: Lateral, layers: Layers, findings: list[Finding], rng: np.random.Generator) -> None:
    """Lateral views show effusion in the posterior sulcus, airspace disease and edema; less laterality."""
    g = geo.g
    lung = layers.lungs["right"]
    fill_total = np.zeros(g.shape, dtype=np.float32)
    for f in findings:
        k = 1.0 if f.label > 0 else 0.6
        if f.name == "Pleural Effusion":
            height = (
                EFFUSION_HEIGHT.get(f.size, 0.1)
                * (geo.sulcus - geo.apex)
                * (1.3 if f.side == "bilateral" else 1)
            )
            t = np.clip((g.x - geo.front) / (geo.back - geo.front), 0, 1)
            level = geo.sulcus - height - 0.05 * t**2 - 0.02
            fill_total = np.maximum(fill_total, ramp(g.y - level, 0.03) * k * 0.9)
        elif f.name in ("Consolidation", "Lung Opacity", "Pneumonia"):
            zone = LOBE_ZONE.get(f.location, "lower")
            cy = {"upper": 0.35, "middle": 0.55, "lower": 0.75}[zone]
            cx = 0.60 if zone == "lower" else 0.42
            r = np.sqrt(((g.x - cx) / 0.13) ** 2 + ((g.y - cy) / 0.11) ** 2)
            noise = _blob_noise(rng, g.shape, 12)
            fill_total = np.maximum(fill_total, np.clip((1.2 - r) * 1.5 + noise - 0.5, 0, 0.8) * k)
        elif f.name == "Edema":
            r = np.sqrt(((g.x - 0.5) / 0.2) ** 2 + ((g.y - 0.5) / 0.25) ** 2)
            fill_total = np.maximum(fill_total, np.exp(-(r**2)) * EDEMA_STRENGTH.get(f.size, 0.3) * 1.5 * k)
        elif f.name == "Atelectasis":
            d = np.abs(g.y - (geo.dome_curve(g.x) - 0.06))
            fill_total = np.maximum(fill_total, ramp(0.02 - d, 0.01) * 0.6 * k)
    for side in SIDES:
        layers.lungs[side] = layers.lungs[side] * (1 - np.clip(fill_total, 0, 0.95))
    layers.opacity = layers.opacity + 0.05 * fill_total * lung
