"""Support devices (tubes, lines, pacemaker, wires) drawn as metal-dense polylines on top of the anatomy."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cxr_ldm.phantom.anatomy import Frontal, Grid, Lateral, Layers, side_sign
from cxr_ldm.phantom.findings import Finding

Point = tuple[float, float]


class _Canvas:
    """PIL drawing in frame units on a grid's pixels."""

    def __init__(self, grid: Grid):
        self.grid = grid
        h, w = grid.shape
        self.w, self.h = w, h
        self.image = Image.new("L", (w, h), 0)
        self.draw = ImageDraw.Draw(self.image)

    def _xy(self, p: Point) -> tuple[float, float]:
        px = self.grid.px
        return ((p[0] - 0.5) / px + self.w / 2 - 0.5, (p[1] - 0.6) / px + self.h / 2 - 0.5)

    def _width(self, units: float) -> int:
        return max(1, round(units / self.grid.px))

    def line(self, points: list[Point], width: float, value: int) -> None:
        self.draw.line([self._xy(p) for p in points], fill=value, width=self._width(width), joint="curve")

    def tube(self, points: list[Point], width: float, value: int) -> None:
        """A tube with a brighter radio-opaque stripe along it."""
        self.line(points, width, value // 2)
        self.line(points, width / 3, value)

    def box(self, centre: Point, size: Point, value: int) -> None:
        (x0, y0), (x1, y1) = (
            self._xy((centre[0] - size[0] / 2, centre[1] - size[1] / 2)),
            self._xy((centre[0] + size[0] / 2, centre[1] + size[1] / 2)),
        )
        radius = max(1, round(min(x1 - x0, y1 - y0) / 4))
        self.draw.rounded_rectangle((x0, y0, x1, y1), radius=radius, fill=value)

    def loop(self, centre: Point, size: Point, width: float, value: int) -> None:
        (x0, y0), (x1, y1) = (
            self._xy((centre[0] - size[0] / 2, centre[1] - size[1] / 2)),
            self._xy((centre[0] + size[0] / 2, centre[1] + size[1] / 2)),
        )
        self.draw.ellipse((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)), outline=value, width=self._width(width))

    def array(self) -> np.ndarray:
        img = self.image.filter(ImageFilter.GaussianBlur(0.6)) if self.w >= 96 else self.image
        return np.asarray(img, dtype=np.float32) / 255.0


def _smooth(points: list[Point], n: int = 24) -> list[Point]:
    """Catmull-Rom style resampling so tubes curve instead of kinking."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3:
        return [tuple(p) for p in pts]
    t = np.linspace(0, 1, len(pts))
    ts = np.linspace(0, 1, n * (len(pts) - 1))
    out = []
    for dim in range(2):
        coeffs = np.polyfit(t, pts[:, dim], min(3, len(pts) - 1))
        out.append(np.polyval(coeffs, ts))
    # keep the true end points so tips land where they should
    out[0][0], out[1][0], out[0][-1], out[1][-1] = pts[0, 0], pts[0, 1], pts[-1, 0], pts[-1, 1]
    return list(zip(out[0].tolist(), out[1].tolist(), strict=True))


def draw_devices(geo, layers: Layers, findings: list[Finding], rng: np.random.Generator) -> None:
    """Add every device named in the Support Devices finding to the metal layer."""
    device = next((f for f in findings if f.name == "Support Devices"), None)
    if device is None:
        return
    canvas = _Canvas(layers.grid)
    kinds = device.detail.split(",")
    if isinstance(geo, Frontal):
        _frontal(canvas, geo, kinds, device.side or "right", rng)
    elif isinstance(geo, Lateral):
        _lateral(canvas, geo, kinds, rng)
    layers.metal = layers.metal + 1.1 * canvas.array()


def _frontal(c: _Canvas, f: Frontal, kinds: list[str], side: str, rng: np.random.Generator) -> None:
    a = f.a
    m = a.mid
    carina = a.apex + 0.19
    sg = side_sign(side)
    j = float(rng.uniform(-0.01, 0.01))
    if "et_tube" in kinds:
        c.tube([(m - 0.004, -0.1), (m - 0.004 + j / 2, carina - float(rng.uniform(0.04, 0.07)))], 0.012, 200)
    if "ng_tube" in kinds:
        pts = [
            (m + 0.005, -0.1),
            (m + 0.012, 0.40),
            (m + 0.035, f.dome["left"] - 0.02),
            (m + 0.45 * f.T, f.dome["left"] + 0.08),
            (m + 0.33 * f.T, f.dome["left"] + 0.12 + j),
        ]
        c.line(_smooth(pts), 0.006, 170)
    if "central_line" in kinds:
        pts = [
            (m + sg * 0.13, -0.02),
            (m + sg * 0.09, 0.15),
            (m + sg * 0.04, 0.27),
            (m - 0.025, carina + 0.05 + j),
        ]
        c.line(_smooth(pts), 0.006, 190)
    if "picc" in kinds:
        pts = [
            (m + sg * (a.body + 0.05), 0.26),
            (m + sg * 0.2, 0.19 + j),
            (m + sg * 0.07, 0.24),
            (m - 0.02, carina + 0.08),
        ]
        c.line(_smooth(pts), 0.005, 180)
    if "pacemaker" in kinds:
        gen = (m + 0.62 * f.T, a.clavicle + 0.07)
        c.box(gen, (0.075, 0.055), 255)
        c.line(
            _smooth(
                [
                    gen,
                    (m + 0.25 * f.T, a.clavicle + 0.03),
                    (m - 0.01, carina + 0.1),
                    (m - 0.04, f.dome["right"] - 0.12),
                ]
            ),
            0.005,
            230,
        )
        c.line(
            _smooth(
                [
                    gen,
                    (m + 0.2 * f.T, a.clavicle + 0.05),
                    (m + 0.01, carina + 0.12),
                    (m + 0.12, f.dome["left"] - 0.05),
                ]
            ),
            0.005,
            230,
        )
    if "sternal_wires" in kinds:
        for i in range(5):
            c.loop((m + 0.002 * i, a.apex + 0.09 + 0.07 * i), (0.028, 0.016), 0.004, 240)
    if "chest_tube" in kinds:
        s_lat = f.lateral_edge(side, np.float32(f.dome[side]))
        pts = [
            (m + sg * (float(s_lat) + 0.06), f.dome[side] + 0.06),
            (m + sg * 0.85 * f.T, f.dome[side] - 0.1),
            (m + sg * 0.45 * f.T, a.apex + 0.06),
        ]
        c.tube(_smooth(pts), 0.011, 190)


def _lateral(c: _Canvas, f: Lateral, kinds: list[str], rng: np.random.Generator) -> None:
    if "et_tube" in kinds:
        c.tube([(0.46 - 0.012, -0.1), (0.46 + 0.12 * 0.32, 0.32)], 0.012, 200)
    if "ng_tube" in kinds:
        c.line(
            _smooth([(0.50, -0.1), (0.56, 0.4), (0.58, f.dome_front + 0.05), (0.45, f.dome_front + 0.15)]),
            0.006,
            170,
        )
    if "central_line" in kinds or "picc" in kinds:
        c.line(_smooth([(0.42, 0.05), (0.40, 0.2), (0.43, 0.36)]), 0.005, 180)
    if "pacemaker" in kinds:
        c.box((0.27, 0.27), (0.03, 0.07), 255)
        c.line(_smooth([(0.27, 0.27), (0.38, 0.32), (0.40, 0.55), (0.33, f.dome_front - 0.03)]), 0.005, 230)
    if "sternal_wires" in kinds:
        for i in range(5):
            c.loop((f.front + 0.01 + 0.004 * i, 0.28 + 0.07 * i), (0.012, 0.02), 0.004, 240)
    if "chest_tube" in kinds:
        c.tube(_smooth([(0.70, f.sulcus), (0.66, 0.6), (0.55, 0.25)]), 0.011, 190)
