"""Procedural phantoms in HU on a fine grid: an adult chest (different anatomy per seed, smooth
along z) and a QA phantom (water cylinder with a high-contrast rod) for MTF and noise.

Coordinates follow DICOM patient axes in mm: +x towards the patient's left (image right), +y
posterior (image bottom), z along the table. The grid's pixel centres are at
(i - N/2 + 0.5) * pixel, so the phantom is centred on the isocentre.

The chest holds: body outline, subcutaneous fat, muscle, heart with pericardial fat, aorta,
mediastinum, two lungs of textured parenchyma (about -850 HU, denser posteriorly), branching
3-D vessel trees and airway trees (air lumen, soft-tissue wall), nodules, emphysema clusters
below -950 HU, ribs, spine (cortical shell, trabecular core, canal, posterior elements) and
sternum. Everything 3-D (trees, nodules, emphysema, texture, organ sizes) varies smoothly with z,
so neighbouring slices of one patient look like neighbouring slices of a real scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AIR, FAT, MUSCLE, BLOOD, SOFT = -1000.0, -100.0, 50.0, 40.0, 30.0
LUNG = -855.0
CORTICAL, TRABECULAR = 1000.0, 220.0


@dataclass
class Segment:
    """A cylinder between two 3-D points (mm) with a radius; airways carry a wall."""

    a: np.ndarray
    b: np.ndarray
    radius: float
    wall: float = 0.0


@dataclass
class Slice:
    hu: np.ndarray  # fine grid, float32
    lung: np.ndarray  # fine grid, bool


@dataclass
class ChestPatient:
    """One simulated patient: anatomy parameters drawn from a seed, evaluated at any z."""

    seed: int
    n: int  # fine grid size
    pixel: float  # fine pixel, mm
    z_centre: float = 0.0
    params: dict[str, float] = field(default_factory=dict)
    vessels: list[Segment] = field(default_factory=list)
    airways: list[Segment] = field(default_factory=list)
    nodules: list[tuple[np.ndarray, float, float]] = field(default_factory=list)
    emphysema: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    textures: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def create(cls, seed: int, n: int, pixel: float, body_scale: float = 1.0) -> ChestPatient:
        """A patient from ``seed`` on an n x n grid of ``pixel`` mm; ``body_scale`` scales
        the body outline (domain randomisation: small and large patients)."""
        rng = np.random.default_rng(seed)
        p = cls(seed, n, pixel)
        p.params = {
            "a": rng.uniform(148, 165) * body_scale, "b": rng.uniform(102, 122) * body_scale,
            "fat": rng.uniform(8, 24), "lung_w": rng.uniform(0.30, 0.36),
            "lung_h": rng.uniform(0.60, 0.70), "heart": rng.uniform(48, 60),
            "rib_phase": rng.uniform(0, 2 * np.pi), "density": rng.uniform(-15, 15),
        }
        a, b = p.params["a"], p.params["b"]
        for side in (-1.0, 1.0):  # vessel trees from each hilum, fanning out in 3-D
            for k in range(5):
                root = np.array([side * 45.0, -20.0 + 10 * k, rng.uniform(-25, 25)])
                ang = -1.2 + 0.6 * k + rng.uniform(-0.2, 0.2)
                d0 = np.array([side * np.cos(ang), np.sin(ang), rng.uniform(-0.5, 0.5)])
                p.vessels += _tree(rng, root, d0, length=24, radius=4.5, depth=7, wall=0.0)
        carina = np.array([0.0, 18.0, 35.0])
        p.airways += [Segment(np.array([0.0, 18.0, 120.0]), carina, 8.5, 1.8)]  # trachea
        for side in (-1.0, 1.0):
            p.airways += _tree(rng, carina, np.array([side * 0.8, 0.1, -0.6]), length=30,
                               radius=6.0, depth=6, wall=1.5)
        for _ in range(int(rng.integers(1, 4))):  # nodules
            centre = _lung_point(rng, a, b, p.params)
            p.nodules.append((centre, float(rng.uniform(2.5, 9.0)),
                              float(rng.choice([30.0, 45.0, -450.0]))))
        for _ in range(int(rng.integers(0, 10))):  # emphysema clusters
            centre = _lung_point(rng, a, b, p.params)
            p.emphysema.append((centre, rng.uniform(4, 18, size=3)))
        for _ in range(3):  # parenchymal texture: correlated noise, mixed along z
            p.textures.append(_smooth_noise(rng, n, pixel, corr_mm=1.6).astype(np.float32))
        return p

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        c = (np.arange(self.n) - self.n / 2 + 0.5) * self.pixel
        return np.meshgrid(c, c)  # X (columns), Y (rows)

    def slice(self, z: float) -> Slice:
        """The HU image and lung mask at table position z (mm, relative to the chest centre)."""
        pr = self.params
        X, Y = self.grid()
        a, b = pr["a"], pr["b"]
        s = 1.0 - 0.12 * (z / 70.0) ** 2  # the chest narrows away from its centre
        hu = np.full(X.shape, AIR, dtype=np.float32)
        body = _superellipse(X, Y * np.where(Y > 0, 1.08, 1.0), a * s, b, 2.3)
        hu[body] = FAT
        inner = _superellipse(X, Y, a * s - pr["fat"], b - pr["fat"] * 0.8, 2.3)
        hu[inner] = MUSCLE
        # lungs
        lw, lh = pr["lung_w"] * a * s, pr["lung_h"] * b * (1.0 - 0.08 * z / 70.0)
        lungs = np.zeros(X.shape, bool)
        for side in (-1.0, 1.0):
            cx = side * (a * s * 0.45)
            lungs |= _superellipse(X - cx, Y - 2.0, lw, lh, 2.2)
        hr = pr["heart"] * (1.0 - 0.25 * (z / 60.0) ** 2) if abs(z) < 60 else 0.0
        heart = ((X - 18) / (hr + 1e-6)) ** 2 + ((Y + 12) / (0.82 * hr + 1e-6)) ** 2 <= 1
        pericardial = ((X - 18) / (hr + 6)) ** 2 + ((Y + 12) / (0.82 * hr + 6)) ** 2 <= 1
        mediastinum = (X / 32.0) ** 2 + ((Y + 0.1 * b) / (0.72 * b)) ** 2 <= 1
        lungs &= ~pericardial & ~mediastinum & inner
        texture = self._texture(z)
        gravity = 45.0 * (Y / b)  # dependent (posterior) lung is denser
        hu[lungs] = (LUNG + pr["density"] + gravity + texture)[lungs]
        hu[mediastinum & inner & ~lungs] = SOFT
        hu[pericardial & inner] = FAT + 10
        hu[heart] = BLOOD
        for (ax, ay), ar in (((-12.0, -28.0), 14.0), ((22.0, 52.0), 11.5)):  # aorta up, down
            hu[(X - ax) ** 2 + (Y - ay) ** 2 <= ar * ar] = BLOOD + 5
        hu[(X - 6.0) ** 2 + (Y - 40.0) ** 2 <= 6.0**2] = AIR  # oesophagus, air-filled
        self._emphysema(hu, lungs, X, Y, z)
        self._segments(hu, lungs, X, Y, z)
        for nc, nr, value in self.nodules:
            dz = z - nc[2]
            if abs(dz) < nr:
                rr = np.sqrt(nr * nr - dz * dz)
                hu[((X - nc[0]) ** 2 + (Y - nc[1]) ** 2 <= rr * rr) & lungs] = value
        self._bones(hu, X, Y, z, a * s, b, inner, body)
        return Slice(hu, lungs)

    def _texture(self, z: float) -> np.ndarray:
        w = [np.cos(z / 9.0), np.sin(z / 9.0), np.cos(z / 4.0 + 1.0)]
        return 22.0 * (w[0] * self.textures[0] + w[1] * self.textures[1]) \
            + 10.0 * w[2] * self.textures[2]

    def _emphysema(self, hu: np.ndarray, lungs: np.ndarray, X: np.ndarray, Y: np.ndarray,
                   z: float) -> None:
        for centre, axes in self.emphysema:
            dz = (z - centre[2]) / axes[2]
            if abs(dz) >= 1:
                continue
            k = 1 - dz * dz
            m = (((X - centre[0]) / axes[0]) ** 2 + ((Y - centre[1]) / axes[1]) ** 2 <= k) & lungs
            hu[m] = -975.0 + 0.4 * (hu[m] - LUNG).clip(-30, 30)

    def _segments(self, hu: np.ndarray, lungs: np.ndarray, X: np.ndarray, Y: np.ndarray,
                  z: float) -> None:
        """Draw vessel and airway cylinders cut by the plane at z."""
        for seg, is_airway in [(s, False) for s in self.vessels] + \
                [(s, True) for s in self.airways]:
            outer = seg.radius + seg.wall
            lo, hi = min(seg.a[2], seg.b[2]) - outer, max(seg.a[2], seg.b[2]) + outer
            if not lo <= z <= hi:
                continue
            xs = sorted((seg.a[0], seg.b[0]))
            ys = sorted((seg.a[1], seg.b[1]))
            i0 = max(0, int((ys[0] - outer) / self.pixel + self.n / 2) - 1)
            i1 = min(self.n, int((ys[1] + outer) / self.pixel + self.n / 2) + 2)
            j0 = max(0, int((xs[0] - outer) / self.pixel + self.n / 2) - 1)
            j1 = min(self.n, int((xs[1] + outer) / self.pixel + self.n / 2) + 2)
            if i0 >= i1 or j0 >= j1:
                continue
            px, py = X[i0:i1, j0:j1], Y[i0:i1, j0:j1]
            d = _segment_distance(px, py, z, seg.a, seg.b)
            view = hu[i0:i1, j0:j1]
            inside_lung = lungs[i0:i1, j0:j1] if not is_airway else \
                np.ones(view.shape, bool) & (view > -990)
            if is_airway:
                view[(d <= outer) & inside_lung] = SOFT
                view[d <= seg.radius] = AIR
            else:
                view[(d <= seg.radius) & inside_lung] = BLOOD

    def _bones(self, hu: np.ndarray, X: np.ndarray, Y: np.ndarray, z: float, a: float,
               b: float, inner: np.ndarray, body: np.ndarray) -> None:
        pr = self.params
        # spine: vertebral body (cortical shell, trabecular core), canal, posterior elements
        vy = b - 68.0
        vb = X**2 + ((Y - vy) / 0.9) ** 2
        hu[vb <= 18.0**2] = CORTICAL
        hu[vb <= 16.3**2] = TRABECULAR
        ring = np.hypot(X, Y - (vy + 26.0))
        hu[(ring <= 13.0) & (ring > 8.0) & (Y > vy + 18)] = CORTICAL - 250
        hu[ring <= 8.0] = 15.0  # spinal canal
        hu[(np.abs(X) < 3.5) & (Y > vy + 34) & (Y < vy + 52) & body] = CORTICAL - 300
        # sternum, anterior midline
        st = (X / 14.0) ** 2 + ((Y + b - 16.0) / 6.5) ** 2
        hu[st <= 1.0] = CORTICAL - 150
        hu[st <= 0.55] = TRABECULAR + 30
        # ribs: cross-sections around the inner body wall; each appears over part of z
        for i in range(11):
            ang = np.pi * (0.10 + 0.8 * i / 10.0)
            for side in (-1.0, 1.0):
                phase = pr["rib_phase"] + 0.9 * i + (0.5 if side > 0 else 0.0)
                if np.sin(2 * np.pi * z / 34.0 + phase) < -0.2:
                    continue
                cx = side * (a - pr["fat"] - 10.0) * np.sin(ang)
                cy = -(b - pr["fat"] * 0.8 - 9.0) * np.cos(ang)
                t = np.arctan2(cy / b, cx / a) + np.pi / 2  # along the wall
                u = (X - cx) * np.cos(t) + (Y - cy) * np.sin(t)
                v = -(X - cx) * np.sin(t) + (Y - cy) * np.cos(t)
                r = (u / 9.0) ** 2 + (v / 4.5) ** 2
                hu[(r <= 1.0) & inner] = CORTICAL
                hu[(r <= 0.45) & inner] = TRABECULAR + 80


def _superellipse(x: np.ndarray, y: np.ndarray, a: float, b: float, p: float) -> np.ndarray:
    return (np.abs(x / a) ** p + np.abs(y / b) ** p) <= 1.0


def _lung_point(rng: np.random.Generator, a: float, b: float,
                params: dict[str, float]) -> np.ndarray:
    side = rng.choice([-1.0, 1.0])
    return np.array([side * a * 0.45 + rng.uniform(-0.5, 0.5) * params["lung_w"] * a,
                     rng.uniform(-0.5, 0.6) * params["lung_h"] * b, rng.uniform(-40, 40)])


def _tree(rng: np.random.Generator, root: np.ndarray, direction: np.ndarray, length: float,
          radius: float, depth: int, wall: float) -> list[Segment]:
    """A branching tree of cylinders: each branch splits in two, thinner and shorter."""
    out: list[Segment] = []
    stack = [(root, direction / np.linalg.norm(direction), length, radius, depth)]
    while stack:
        start, d, ln, r, k = stack.pop()
        end = start + d * ln
        out.append(Segment(start, end, r, wall * r / 6.0 if wall else 0.0))
        if k <= 1 or r < 0.6:
            continue
        for _ in range(2):
            turn = rng.normal(0, 0.45, size=3)
            nd = d + turn - np.dot(turn, d) * d * 0.5
            nd /= np.linalg.norm(nd)
            stack.append((end, nd, ln * rng.uniform(0.68, 0.85), r * rng.uniform(0.66, 0.8),
                          k - 1))
    return out


def _segment_distance(x: np.ndarray, y: np.ndarray, z: float, a: np.ndarray,
                      b: np.ndarray) -> np.ndarray:
    ab = b - a
    denom = float(np.dot(ab, ab)) or 1e-9
    t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / denom
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2
                   + (z - a[2] - t * ab[2]) ** 2)


def _smooth_noise(rng: np.random.Generator, n: int, pixel: float, corr_mm: float) -> np.ndarray:
    """Unit-variance Gaussian random field with a Gaussian correlation of ``corr_mm``."""
    white = rng.standard_normal((n, n))
    f = np.fft.fftfreq(n, d=pixel)
    g = np.exp(-2 * (np.pi * corr_mm) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    field = np.fft.ifft2(np.fft.fft2(white) * g).real
    return field / field.std()


def add_table(hu: np.ndarray, pixel: float, y_top: float) -> None:
    """A patient table (couch) below the patient, in place: a curved carbon-fibre sandwich
    (2 mm skins of 250 HU around a 36 mm foam core of -900 HU), 460 mm wide, whose top
    surface is at ``y_top`` mm (posterior of the patient) on the midline."""
    n = hu.shape[0]
    c = (np.arange(n) - n / 2 + 0.5) * pixel
    X, Y = np.meshgrid(c, c)
    depth = Y - (y_top + 0.0009 * X**2)  # the top surface curves up at the sides
    inside = (np.abs(X) <= 230.0) & (depth >= 0.0) & (depth <= 40.0) & (hu < -900.0)
    skin = (depth <= 2.0) | (depth >= 38.0)
    hu[inside & skin] = 250.0
    hu[inside & ~skin] = -900.0


# ------------------------------------------------------------------------------- QA phantom

QA_WATER_RADIUS = 100.0
QA_ROD_RADIUS = 20.0
QA_ROD_CENTRE = (50.0, 0.0)  # (x, y) mm
QA_ROD_HU = 1000.0
QA_UNIFORM_CENTRE = (-45.0, 0.0)
QA_UNIFORM_RADIUS = 20.0


def qa_slice(n: int, pixel: float) -> Slice:
    """Water cylinder (0 HU, 200 mm) with a +1000 HU rod (40 mm) and a uniform region."""
    c = (np.arange(n) - n / 2 + 0.5) * pixel
    X, Y = np.meshgrid(c, c)
    hu = np.full((n, n), AIR, dtype=np.float32)
    hu[X**2 + Y**2 <= QA_WATER_RADIUS**2] = 0.0
    rx, ry = QA_ROD_CENTRE
    hu[(X - rx) ** 2 + (Y - ry) ** 2 <= QA_ROD_RADIUS**2] = QA_ROD_HU
    return Slice(hu, np.zeros((n, n), bool))
