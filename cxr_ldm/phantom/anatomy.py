"""Per-patient chest anatomy drawn as tissue density maps, so every finding can be laid over a plausible body.

Coordinates are in "frame units": x runs 0..1 across a standard 1.0 x 1.2 frame and y runs 0..1.2 down it.
Density is additive (soft tissue, bone, metal add; air in the lungs subtracts); `render.py` turns the sum
into 8-bit grey values. "right" and "left" are the patient's: on a frontal view the patient's right lung
is on the image's left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FRAME_HEIGHT = 1.2
SIDES = ("right", "left")


def ramp(distance: np.ndarray | float, eps: float) -> np.ndarray:
    """Anti-aliased inside/outside test: 0 outside, 1 inside, linear across a band `eps` wide."""
    out = np.multiply(distance, np.float32(1.0 / eps), dtype=np.float32)
    out += np.float32(0.5)
    return np.minimum(np.maximum(out, np.float32(0.0), out=out), np.float32(1.0), out=out)


def side_sign(side: str) -> float:
    """+1 for the patient's left (image right on frontal views), -1 for the patient's right."""
    return 1.0 if side == "left" else -1.0


@dataclass(frozen=True)
class Anatomy:
    """Body shape of one patient; studies of the same patient share it, with small per-study jitter."""

    mid: float = 0.5
    thorax: float = 0.35  # half-width of the rib cage (lateral lung edge)
    body: float = 0.44  # half-width of the soft-tissue outline
    apex: float = 0.17  # top of the lungs
    dome: float = 0.80  # top of the right hemidiaphragm dome
    dome_gap: float = 0.03  # left dome sits this much lower
    sulcus: float = 0.11  # costophrenic angle is this much below the dome
    ctr: float = 0.45  # cardiothoracic ratio
    mediastinum: float = 0.065
    rib_spacing: float = 0.068
    rib_start: float = 0.16
    clavicle: float = 0.185
    female: bool = False
    rotation: float = 0.0  # degrees
    markings_seed: int = 0
    tissue: float = 1.0  # soft tissue thickness factor (habitus)


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """A patient: sizes vary within normal limits so that models cannot key on one fixed body."""
    thorax = float(rng.uniform(0.32, 0.38))
    return Anatomy(
        mid=float(rng.uniform(0.485, 0.515)),
        thorax=thorax,
        body=thorax + float(rng.uniform(0.06, 0.11)),
        apex=float(rng.uniform(0.15, 0.19)),
        dome=float(rng.uniform(0.76, 0.84)),
        dome_gap=float(rng.uniform(0.0, 0.045)),
        sulcus=float(rng.uniform(0.09, 0.13)),
        ctr=float(rng.uniform(0.40, 0.48)),
        mediastinum=float(rng.uniform(0.064, 0.08)),
        rib_spacing=float(rng.uniform(0.062, 0.072)),
        rib_start=float(rng.uniform(0.15, 0.18)),
        clavicle=float(rng.uniform(0.17, 0.20)),
        female=bool(rng.random() < 0.45),
        rotation=float(rng.normal(0.0, 1.2)),
        markings_seed=int(rng.integers(0, 2**31 - 1)),
        tissue=float(rng.uniform(0.85, 1.15)),
    )


@dataclass
class Grid:
    """Pixel centres in frame units, kept as a row and a column vector so most maps broadcast cheaply."""

    x: np.ndarray  # (1, w)
    y: np.ndarray  # (h, 1)
    px: float  # frame units per pixel

    @classmethod
    def fit(cls, width: int, height: int, zoom: float = 1.0) -> Grid:
        scale = min(width / 1.0, height / FRAME_HEIGHT) * zoom
        xs = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / scale + 0.5
        ys = (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / scale + FRAME_HEIGHT / 2
        return cls(x=xs[None, :], y=ys[:, None], px=1.0 / scale)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y.shape[0], self.x.shape[1])


@dataclass
class Layers:
    """Density maps a view is made of; findings edit them before they are summed."""

    grid: Grid
    body: np.ndarray
    bone: np.ndarray
    solid: np.ndarray  # heart, mediastinum, hila: soft tissue that displaces lung
    lungs: dict[str, np.ndarray]  # air fraction per side (0..1)
    air_gain: dict[str, np.ndarray | float] = field(default_factory=dict)  # per-side air multiplier
    markings: np.ndarray | float = 0.0
    opacity: np.ndarray | float = 0.0  # findings that add density within the chest
    metal: np.ndarray | float = 0.0
    view: str = "PA"

    def density(self) -> np.ndarray:
        air = 0.0
        for side, lung in self.lungs.items():
            air = air + lung * self.air_gain.get(side, 1.0)
        return self.body + self.bone + self.solid - 0.66 * air + self.markings + self.opacity + self.metal


class Frontal:
    """Geometry of a PA or AP chest; methods give masks that findings reuse (lung, heart, zones)."""

    def __init__(self, a: Anatomy, grid: Grid, ap: bool = False, inspiration: float = 0.0):
        self.a = a
        self.g = grid
        self.ap = ap
        self.eps = max(grid.px * 1.2, 0.004)
        lift = (0.045 if ap else 0.0) - inspiration
        self.dome = {"right": a.dome - lift, "left": a.dome + a.dome_gap - lift}
        self.cp = {s: self.dome[s] + a.sulcus for s in SIDES}
        self.T = a.thorax
        self.hilum = {s: (a.mid + side_sign(s) * (a.mediastinum + 0.045), a.apex + 0.30) for s in SIDES}

    def s(self, side: str, x: np.ndarray | None = None) -> np.ndarray:
        """Signed horizontal distance from the midline, positive towards `side`."""
        x = self.g.x if x is None else x
        return side_sign(side) * (x - self.a.mid)

    def lateral_edge(self, side: str, y: np.ndarray) -> np.ndarray:
        t = np.clip((y - self.a.apex) / (self.cp[side] - self.a.apex), 0.0, 1.0)
        return self.T * (0.45 + 0.535 * t**0.35)

    def dome_curve(self, side: str, s: np.ndarray) -> np.ndarray:
        u = s / self.T
        top, cp = self.dome[side], self.cp[side]
        return top + (cp - top) / 0.36 * np.maximum(u - 0.4, 0) ** 2 + 0.25 * np.maximum(0.4 - u, 0) ** 2

    def lung(
        self, side: str, x: np.ndarray | None = None, y: np.ndarray | None = None, eps=None
    ) -> np.ndarray:
        """Air-filled lung region of one side, before the heart and findings displace it."""
        x = self.g.x if x is None else x
        y = self.g.y if y is None else y
        eps = self.eps if eps is None else eps
        s = self.s(side, x)
        top = self.a.apex + 1.9 * self.T * (s / self.T - 0.42) ** 2
        soft = max(eps, 0.014)
        return (
            ramp(self.lateral_edge(side, y) - s, soft)
            * ramp(y - top, soft)
            * ramp(s - self.a.mediastinum * 0.92, eps)
            * ramp(self.dome_curve(side, s) - y, eps)
        )

    def heart_half_width(self, ctr: float) -> float:
        """Half the cardiac width: the ratio is measured against the inner rib cage (about 2 x thorax)."""
        return ctr * self.T * 0.985 * (1.08 if self.ap else 1.0)

    def _ellipse(self, cx: float, cy: float, ax: float, by: float, theta: float) -> np.ndarray:
        dx, dy = self.g.x - cx, self.g.y - cy
        c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
        rx, ry = dx * c + dy * s, dy * c - dx * s
        q = np.sqrt((rx / ax) ** 2 + (ry / by) ** 2)
        return ramp((1 - q) * min(ax, by), self.eps * 1.5)

    def heart(self, ctr: float) -> np.ndarray:
        """Right atrial border to the patient's right, a larger left ventricle sloping down to the left dome."""
        half = self.heart_half_width(ctr)
        m = self.a.mid
        sl = side_sign("left")
        # left ventricle: reaches m + 1.3 * half on the patient's left
        lv_ax, lv_by, lv_t = 0.85 * half, 0.55 * half + 0.035, 0.6
        ext = np.sqrt((lv_ax * np.cos(lv_t)) ** 2 + (lv_by * np.sin(lv_t)) ** 2)
        lv = self._ellipse(m + sl * (1.3 * half - ext), self.dome["left"] - 0.055, lv_ax, lv_by, lv_t)
        # right atrium: reaches m - 0.7 * half on the patient's right
        ra_ax = 0.42 * half
        ra = self._ellipse(m - sl * (0.7 * half - ra_ax), self.dome["right"] - 0.10, ra_ax, 0.15, 0.0)
        return np.maximum(lv, ra)

    def zone(self, side: str, zone: str) -> np.ndarray:
        """Upper, middle or lower third of a lung, as a soft band of rows."""
        top, bottom = self.a.apex, self.cp[side]
        h = bottom - top
        y = self.g.y
        if zone == "upper":
            return ramp(top + 0.36 * h - y, 0.06)
        if zone == "middle":
            return ramp(y - (top + 0.30 * h), 0.06) * ramp(top + 0.66 * h - y, 0.06)
        return ramp(y - (top + 0.55 * h), 0.06)


def _frontal_body(f: Frontal) -> np.ndarray:
    a, g = f.a, f.g
    y = g.y
    neck = 0.075
    shoulder_top = 0.0 if not f.ap else -0.03
    # half-width of the body outline by row: neck, sloping shoulders, then a slightly tapering torso
    w_sh = np.clip((y - shoulder_top) / 0.16, 0, 1)
    arms = 0.12 * (1 - np.clip((y - 0.12) / 0.45, 0, 1))
    half = neck + (a.body + arms - neck) * w_sh**0.5 - 0.04 * np.clip((y - 0.3) / 0.9, 0, 1)
    s = np.abs(g.x - a.mid)
    profile = np.sqrt(np.clip(1 - (s / half) ** 2, 0, 1))
    body = (0.30 + 0.70 * profile) * ramp(half - s, f.eps * 2) * a.tissue
    if a.female:
        for side in SIDES:
            bx = a.mid + side_sign(side) * 0.62 * f.T
            by = f.dome[side] - 0.02
            r = np.sqrt(((g.x - bx) / 0.16) ** 2 + ((y - by) / 0.12) ** 2)
            body = body + 0.12 * ramp(1 - r, 0.4) * ramp(y - by + 0.06, 0.08)
    return body.astype(np.float32)


def _ribs(f: Frontal, side: str, fracture: float | None = None) -> np.ndarray:
    """Posterior ribs arch up then down from the spine; anterior ribs run down towards the midline."""
    a, g = f.a, f.g
    s = f.s(side)
    u = s / f.T
    # posterior ribs
    off = f.T * (0.55 * u**2 - 0.20 * u)
    n = (g.y - off - a.rib_start) / a.rib_spacing
    frac = n - np.floor(n)
    band = np.clip(4.0 * (1 - np.abs(frac - 0.2) / 0.2), 0, 1)
    edge = np.clip(1 - np.abs(np.abs(frac - 0.2) - 0.16) / 0.05, 0, 1)
    post = (0.7 * band + 0.5 * edge) * ((n > 0) & (n < 10.5))
    post = post * ramp(u - 0.06, 0.05) * ramp(1.04 - u, 0.04)
    if fracture is not None:
        rib_n, rib_u = fracture
        gap = np.exp(-(((u - rib_u) / 0.025) ** 2)) * ((n > rib_n) & (n < rib_n + 1))
        post = post * (1 - 0.95 * gap)
    # anterior ribs
    off_a = -f.T * 0.62 * u
    na = (g.y - off_a - (a.rib_start + 0.17)) / (a.rib_spacing * 1.12)
    frac_a = na - np.floor(na)
    band_a = np.clip(3.0 * (1 - np.abs(frac_a - 0.2) / 0.2), 0, 1) * ((na > 0) & (na < 6.5))
    ant = band_a * ramp(u - 0.35, 0.2) * ramp(f.lateral_edge(side, g.y) - s + 0.01, 0.04)
    return (0.13 * post + 0.07 * ant).astype(np.float32)


def _clavicle(f: Frontal, side: str) -> np.ndarray:
    a, g = f.a, f.g
    u = f.s(side) / f.T
    lift = 0.035 if f.ap else 0.0
    slope = 0.09 if f.ap else 0.16
    yc = a.clavicle - lift - slope * f.T * u + 0.035 * np.sin(np.pi * np.clip(u, 0, 1.2))
    d = np.abs(g.y - yc)
    width = 0.012
    shaft = ramp(width - d, f.eps) * ramp(u - 0.12, 0.04) * ramp(1.12 - u, 0.05)
    cortex = ramp(0.004 - np.abs(d - width * 0.85), f.eps)
    return (0.30 * shaft + 0.12 * cortex * shaft).astype(np.float32)


def _spine(f: Frontal) -> np.ndarray:
    a, g = f.a, f.g
    dx = np.abs(g.x - a.mid)
    col = ramp(0.030 - dx, f.eps) * ramp(g.y - 0.02, 0.02)
    period = 0.055
    ph = (g.y / period) % 1.0
    disc = np.clip(1 - np.abs(ph - 0.05) / 0.07, 0, 1)
    body = col * (1 - 0.55 * disc)
    ped_r = np.sqrt(((dx - 0.021) / 0.007) ** 2 + ((ph - 0.35) * period / 0.011) ** 2)
    pedicle = ramp(1 - ped_r, 0.5) * col
    spinous = ramp(0.006 - dx, f.eps) * np.clip(1 - np.abs(ph - 0.7) / 0.15, 0, 1) * col
    return (0.10 * body + 0.08 * pedicle + 0.05 * spinous).astype(np.float32)


def _scapulae(f: Frontal) -> np.ndarray:
    g = f.g
    out = 0.0
    for side in SIDES:
        u = f.s(side) / f.T
        border = 0.74 + 0.35 * (g.y - 0.17)
        reach = 0.20 if f.ap else 0.06
        band = ramp(u - (border + (0.0 if f.ap else 0.22)), 0.03) * ramp(border + 0.22 + reach - u, 0.04)
        out = out + 0.10 * band * ramp(g.y - 0.13, 0.02) * ramp(0.52 - g.y, 0.05)
    return np.asarray(out, dtype=np.float32)


def _markings(f: Frontal, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Bronchovascular markings: streaks radiating from each hilum and fading towards the periphery."""
    g = f.g
    out = {}
    hila = 0.0
    for side in SIDES:
        hx, hy = f.hilum[side]
        dx, dy = g.x - hx, g.y - hy
        r = np.sqrt(dx * dx + dy * dy)
        theta = np.arctan2(dy, dx)
        n = 140
        streak = rng.random(n) ** 3
        streak = np.convolve(np.concatenate([streak, streak[:3]]), [0.25, 0.5, 0.25], "same")[:n]
        idx = ((theta + np.pi) * (n / (2 * np.pi)) + r * 9.0).astype(np.int32) % n
        fade = np.exp(-r / 0.18) * (1 - np.exp(-r / 0.05))
        out[side] = (0.30 * streak[idx] * fade).astype(np.float32)
        hila = hila + 0.14 * np.exp(-(((dx / 0.035) ** 2) + (dy / 0.06) ** 2))
    return out, np.asarray(hila, dtype=np.float32)


def frontal_layers(
    a: Anatomy,
    grid: Grid,
    rng: np.random.Generator,
    ap: bool = False,
    ctr: float | None = None,
    mediastinum_scale: float = 1.0,
    fracture: tuple[str, float, float] | None = None,
    inspiration: float = 0.0,
) -> tuple[Frontal, Layers]:
    """Normal frontal chest for this patient; `ctr` overrides the heart size (cardiomegaly)."""
    f = Frontal(a, grid, ap=ap, inspiration=inspiration)
    g = grid
    body = _frontal_body(f)
    bone = _spine(f) + _scapulae(f)
    for side in SIDES:
        frac = (fracture[1], fracture[2]) if fracture and fracture[0] == side else None
        # lower ribs fade where they overlie the upper abdomen
        below = ramp(g.y - f.dome_curve(side, f.s(side)) - 0.03, 0.08)
        bone = bone + _ribs(f, side, frac) * (1 - 0.6 * below) + _clavicle(f, side)
    heart = f.heart(a.ctr if ctr is None else ctr)
    dx = g.x - a.mid
    mw = a.mediastinum * mediastinum_scale
    knob = 0.025 * np.exp(-(((g.y - (a.apex + 0.17)) / 0.035) ** 2))
    mediast = ramp(mw + knob * (dx > 0) - np.abs(dx - 0.006), f.eps) * ramp(f.dome["left"] - g.y, 0.02)
    dome_y = np.where(dx > 0, f.dome_curve("left", f.s("left")), f.dome_curve("right", f.s("right")))
    heart = heart * ramp(dome_y + 0.01 - g.y, 0.02)
    solid = np.maximum(heart, mediast) * 0.07
    trachea = ramp(0.013 - np.abs(dx + 0.004), f.eps) * ramp(a.apex + 0.19 - g.y, 0.02)
    solid = solid - 0.12 * trachea
    marks, hila = _markings(f, rng)
    solid = solid + hila
    lungs = {}
    markings = 0.0
    displaced = 1 - np.maximum(heart, mediast)
    for side in SIDES:
        # air is thickest low in the chest and thinner at the apex and along the walls
        depth = 0.72 + 0.28 * ramp(g.y - (a.apex + 0.12), 0.25) * ramp(
            f.lateral_edge(side, g.y) - f.s(side) - 0.02, 0.1
        )
        lungs[side] = f.lung(side) * displaced * depth
        markings = markings + marks[side] * lungs[side]
    # abdomen: liver under the right dome, gastric bubble under the left
    below_r = ramp(g.y - f.dome_curve("right", f.s("right")), f.eps * 3) * (dx < 0)
    bubble_x = a.mid + 0.45 * f.T
    bubble = ramp(
        1 - np.sqrt(((g.x - bubble_x) / 0.06) ** 2 + ((g.y - f.dome["left"] - 0.05) / 0.035) ** 2), 0.3
    )
    solid = solid + 0.05 * below_r - 0.22 * bubble * (g.y > f.dome["left"] + 0.03)
    layers = Layers(
        grid=g, body=body, bone=bone, solid=solid, lungs=lungs, markings=markings, view="AP" if ap else "PA"
    )
    return f, layers


class Lateral:
    """Geometry of a lateral chest: anterior to the image left, spine to the right, one merged lung field."""

    def __init__(self, a: Anatomy, grid: Grid, inspiration: float = 0.0):
        self.a = a
        self.g = grid
        self.eps = max(grid.px * 1.2, 0.004)
        self.front = 0.16 + (a.body - 0.44) * 0.3
        self.back = 0.86
        self.apex = a.apex - 0.03
        self.dome_front = a.dome - 0.08 - inspiration
        self.sulcus = a.dome + a.sulcus + 0.05 - inspiration

    def dome_curve(self, x: np.ndarray, offset: float = 0.0) -> np.ndarray:
        t = np.clip((x - self.front) / (self.back - self.front), 0, 1)
        rise = 0.06 * np.sin(np.pi * np.clip(t * 1.2, 0, 1))
        return self.dome_front + offset + (self.sulcus - self.dome_front) * t**2.2 - rise

    def lung(self, x: np.ndarray | None = None, y: np.ndarray | None = None) -> np.ndarray:
        x = self.g.x if x is None else x
        y = self.g.y if y is None else y
        t = np.clip((y - self.apex) / (self.sulcus - self.apex), 0, 1)
        front = self.front + 0.05 + 0.10 * (1 - t) ** 3
        back = self.back - 0.12 * (1 - t) ** 2
        top = self.apex + 3.2 * (x - 0.55) ** 2
        soft = 0.025
        return (
            ramp(x - front, soft)
            * ramp(back - x, soft)
            * ramp(y - top, soft)
            * ramp(self.dome_curve(x) - y, self.eps * 1.5)
        )

    def heart(self, ctr: float) -> np.ndarray:
        scale = ctr / 0.45
        cx = self.front + 0.15 + 0.08 * (scale - 1)
        cy = self.dome_front - 0.03
        ha, hb = 0.16 * scale, 0.15 * scale**0.8
        r = np.sqrt(((self.g.x - cx) / ha) ** 2 + ((self.g.y - cy) / hb) ** 2)
        return ramp((1 - r) * hb, 0.03)


def lateral_layers(
    a: Anatomy, grid: Grid, rng: np.random.Generator, ctr: float | None = None, inspiration: float = 0.0
) -> tuple[Lateral, Layers]:
    """Normal lateral chest for this patient."""
    lat = Lateral(a, grid, inspiration=inspiration)
    g = grid
    x, y = g.x, g.y
    eps = lat.eps
    # body: front and back skin lines, neck at the top, arms raised over the apices
    front_skin = (
        lat.front - 0.07 - 0.03 * np.clip((y - 0.5) / 0.6, 0, 1) + 0.08 * np.clip((0.2 - y) / 0.2, 0, 1)
    )
    back_skin = 0.95 - 0.04 * np.clip((0.3 - y) / 0.3, 0, 1)
    body = ramp(x - front_skin, eps * 2) * ramp(back_skin - x, eps * 2)
    depth = np.clip((x - front_skin) / (back_skin - front_skin), 0, 1)
    body = body * (0.45 + 0.55 * np.sqrt(np.clip(np.sin(np.pi * depth), 0, 1)))
    arms = 0.30 * ramp(0.2 - np.abs(x - 0.55), 0.12) * ramp(0.32 - y, 0.15)
    body = (body * a.tissue * 1.05 + arms).astype(np.float32)
    # spine: vertebral bodies stacked along a gentle kyphotic curve, overlapping the posterior lung
    spine_x = 0.74 - 0.03 * np.sin(np.pi * np.clip(y / 1.2, 0, 1))
    period = 0.06
    ph = (y / period) % 1.0
    disc = np.clip(1 - np.abs(ph - 0.05) / 0.07, 0, 1)
    vert = ramp(0.04 - np.abs(x - spine_x), eps) * (1 - 0.8 * disc)
    cortex = ramp(0.006 - np.abs(np.abs(x - spine_x) - 0.036), eps) * (1 - disc)
    post_el = ramp(0.025 - np.abs(x - spine_x - 0.085), eps) * (0.5 + 0.5 * np.cos(2 * np.pi * ph))
    sternum = ramp(0.010 - np.abs(x - (lat.front + 0.01 + 0.04 * (y - 0.2))), eps) * ramp(y - 0.18, 0.01)
    sternum = sternum * ramp(0.66 - y, 0.01)
    n = (y - 0.15 - 0.35 * (x - 0.5)) / 0.075
    rib = (
        np.clip(1 - np.abs((n % 1.0) - 0.2) / 0.1, 0, 1) * ramp(x - 0.5, 0.1) * ramp(0.9 - x, 0.02) * (n > 0)
    )
    bone = (0.07 * vert + 0.06 * cortex + 0.06 * post_el + 0.10 * sternum + 0.05 * rib).astype(np.float32)
    heart = lat.heart(a.ctr if ctr is None else ctr)
    trachea = ramp(0.015 - np.abs(x - (0.50 + 0.10 * y)), eps) * ramp(0.40 - y, 0.03)
    aorta_r = np.sqrt(((x - 0.56) / 0.10) ** 2 + ((y - 0.36) / 0.08) ** 2)
    aorta = ramp(0.22 - np.abs(aorta_r - 0.9), 0.1) * (y < 0.42)
    below = ramp(y - lat.dome_curve(x), eps)
    heart = heart * (1 - below)
    solid = (0.07 * heart + 0.06 * aorta - 0.12 * trachea + 0.05 * below).astype(np.float32)
    lung = lat.lung() * (1 - 0.9 * heart)
    # the two lungs overlap on a lateral view: the middle of the field holds the most air
    lung = lung * (0.75 + 0.25 * ramp(y - lat.apex - 0.15, 0.3))
    lungs = {"right": lung * 0.45, "left": lung * 0.45}
    hilum = 0.12 * np.exp(-(((x - 0.56) / 0.06) ** 2 + ((y - 0.48) / 0.07) ** 2))
    noise = rng.random(64) ** 4
    idx = ((np.arctan2(y - 0.48, x - 0.56) + np.pi) / (2 * np.pi) * 64).astype(np.int32) % 64
    r = np.sqrt((x - 0.56) ** 2 + (y - 0.48) ** 2)
    markings = (0.16 * noise[idx] * np.exp(-r / 0.15) * (1 - np.exp(-r / 0.06)) * lung + hilum).astype(
        np.float32
    )
    layers = Layers(grid=g, body=body, bone=bone, solid=solid, lungs=lungs, markings=markings, view="LATERAL")
    return lat, layers
