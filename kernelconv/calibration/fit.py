"""Fitting one kernel pair's transfer in physical frequency, and its noise.

Two reconstructions of the same raw data differ (for a linear, shift-invariant reconstruction)
by a radial filter: Y(f) = H(|f|) X(f). The fit finds the H that the filter
(:mod:`kernelconv.engines.filter_engine`) applies best, by least squares on whole slices:

- H is piecewise linear in |f| with knots every ``BIN_LPCM`` lp/cm from 0 up to the corner of
  the finest pair's image spectrum (sqrt(2) x its Nyquist frequency), exactly the table's
  points that the filter interpolates linearly. Each knot's "hat" is applied to the slice
  as the filter applies a transfer (out-of-field padding filled with -1024 HU, reflection
  padding of ``PAD`` pixels), so the fitted points are the least-squares optimum of the filter
  itself, not of a model of it. In lp/cm, from each pair's own pixel spacing: pairs of several
  spacings pool, and one fit holds for any spacing.
- The residual counts on every in-field pixel whose TARGET is strictly inside the stored window
  ]-1024, 3071[ HU; the input enters as stored, clipped pixels included, as it will be
  converted. (The earlier tile fit dropped every 64-pixel tile with a clipped pixel and removed
  each tile's mean, so it never saw the lung, the air or any frequency below a tile's Hann
  leakage: its lowest rings were guessed, and on real pairs its low-pass error moved the local
  mean HU by more than the true target does.)
- Both directions are fitted directly (soft on sharp and sharp on soft). The earlier tile fit
  took sharp -> soft as the inverse of the soft -> sharp fit because its direct fit was diluted
  on simulated pairs; on whole slices the direct fit is the better predictor on every real pair
  here (docs/calibration.md: the fit).
- Regularised: a second-difference (curvature) penalty ``SMOOTH`` x the mean diagonal of the
  normal equations, so knots that carry little information (the corners of the spectrum near
  and beyond Nyquist, where few frequency cells lie and aliasing dominates) follow their
  neighbours instead of the noise, while knots carrying anatomy or noise power (all others on
  real slices) are set by the data; the least squares weights each knot by the power it
  carries (its signal-to-noise), so no separate ring weighting is needed.
- The low frequencies are held to what the HU check measures. Where a real pair is not exactly
  linear (clipped air and lung noise in the sharp image at -1024 HU, the scanner's per-kernel
  CT-number calibration), the pure least-squares H(f < 1 lp/cm) is a compromise dominated by
  the air outside the patient, and the converted series' local mean HU (2.5 mm Gaussian
  low-pass, :mod:`kernelconv.hu_check`) in soft tissue, fat or lung then differs from the true
  target's by up to 2.4 HU on the Siemens chest. So the fit is constrained (weight
  ``REGION_WEIGHT``) to reproduce, on the calibration slices, the true target's own low-pass
  shift in each region the HU check judges (its regions, erosion and floor rule, on the
  input): H(0) is not pinned to 1 but set, with the low knots, to what the pairs show; a true
  kernel change keeps H(0) = 1 and the fit then finds it. Measured on held-out real slices
  (docs/calibration.md): every region within 1 HU of the true target's shift, at a cost of up
  to 1.1 dB of PSNR against the unconstrained least squares, all of it in the air outside the
  patient.

Noise: each kernel's noise SD and NPS on the tiles that are flat in the pair's softer image and
unclipped in both (:mod:`kernelconv.noise`), so the ratio of the two is measured on the same
patches of the same scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kernelconv.engines.filter_engine import PAD, PADDING_HU, frequency_grid
from kernelconv.hu import HU_MAX, HU_MIN
from kernelconv.hu_check import (
    CHECKED,
    LOWPASS_SIGMA_MM,
    HuCheck,
    checked_regions,
    lowpass,
)
from kernelconv.noise import NoiseMeasurement, flat_tiles, measure_noise, unclipped

#: spacing of the transfer's knots (lp/cm)
BIN_LPCM = 0.25
#: curvature penalty, relative to the mean diagonal of the normal equations
SMOOTH = 1e-3
#: weight of the HU-check region constraint, relative to the mean diagonal
REGION_WEIGHT = 1e4
#: H = 1 pinned at the knots up to this frequency (lp/cm; None: nothing pinned, H(0) fitted)
PIN_BELOW_LPCM: float | None = None
#: the low-pass of the region constraint is negligible above this (G(3 lp/cm) < 1e-4)
REGION_MAX_LPCM = 3.0
#: tiles (of the noise module's size) free of clipping are counted for the report's warning
COUNT_TILE_PX = 64
#: rows of pixels per block when the normal equations are summed (bounds the memory)
BLOCK_PIXELS = 1 << 16
#: knots filtered at once (bounds the memory of the complex spectra)
KNOT_BLOCK = 8


@dataclass
class Accumulator:
    """Sums of one direction's least squares (knots every ``BIN_LPCM`` from 0)."""

    gram: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    rhs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pixels: int = 0
    #: per HU-check region: sum over its pixels of each knot's low-passed image, of the
    #: low-passed target, and the pixel count
    region_basis: dict[str, np.ndarray] = field(default_factory=dict)
    region_target: dict[str, float] = field(default_factory=dict)
    region_input: dict[str, float] = field(default_factory=dict)
    region_pixels: dict[str, int] = field(default_factory=dict)
    tiles: int = 0  # 64-pixel tiles free of clipping in both images (for the report)
    slices: int = 0
    nyquist: float = 0.0  # highest image Nyquist frequency (lp/cm) of the pooled pairs

    @property
    def size(self) -> int:
        return len(self.rhs)

    def grow(self, size: int) -> None:
        if size > self.size:
            pad = size - self.size
            self.gram = np.pad(self.gram, ((0, pad), (0, pad)))
            self.rhs = np.pad(self.rhs, (0, pad))
            for name, v in self.region_basis.items():
                self.region_basis[name] = np.pad(v, (0, pad))


def knots_for(pixel_mm: float) -> np.ndarray:
    """Knots (lp/cm) from 0 up to the corner of an image spectrum at this spacing."""
    corner = np.sqrt(2.0) * 10.0 / (2.0 * pixel_mm)
    return np.arange(int(np.ceil(corner / BIN_LPCM)) + 1) * BIN_LPCM


def _hats(f: np.ndarray, knots: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(len(ids), *f.shape): the piecewise-linear hat of knots ``ids`` at ``f`` (the last
    knot's held beyond it, as the filter holds a table's last point)."""
    pos = np.clip(f / BIN_LPCM, 0.0, len(knots) - 1.0)
    out = np.empty((len(ids), *f.shape))
    for n, i in enumerate(ids):
        out[n] = np.maximum(0.0, 1.0 - np.abs(pos - i))
    return out


def _check_regions(x: np.ndarray, y: np.ndarray, pixel_mm: float) -> dict[str, np.ndarray]:
    """The pixels :class:`kernelconv.hu_check.HuCheck` judges when ``x`` is converted towards
    ``y``'s kernel (:func:`kernelconv.hu_check.checked_regions`), with the output noise it
    would expect taken from the pair itself."""
    xc = np.clip(x, HU_MIN, HU_MAX)
    probe = HuCheck()
    probe.add(xc, y, pixel_mm)
    return checked_regions(xc, pixel_mm, probe.noise_ratio or 1.0)


def _count_tiles(x: np.ndarray, y: np.ndarray) -> int:
    n = min(COUNT_TILE_PX, *x.shape)
    valid = unclipped(x) & unclipped(y)
    step = n // 2
    return sum(1 for i in range(0, x.shape[0] - n + 1, step)
               for j in range(0, x.shape[1] - n + 1, step) if valid[i:i + n, j:j + n].all())


def _add_direction(acc: Accumulator, x: np.ndarray, y: np.ndarray, pixel_mm: float) -> None:
    """One slice pair (HU, same geometry) into one direction's sums: ``x`` predicts ``y``."""
    knots = knots_for(pixel_mm)
    acc.grow(len(knots))
    h, w = x.shape
    pad = min(PAD, h - 1, w - 1)
    xp = np.pad(np.where(x <= PADDING_HU, HU_MIN, x).astype(np.float64), pad, mode="reflect")
    spec = np.fft.rfft2(xp)
    f = frequency_grid(xp.shape, pixel_mm)
    crop = (slice(None), slice(pad, pad + h), slice(pad, pad + w))
    use = unclipped(y) & (x > PADDING_HU)
    k = len(knots)
    z = np.empty((k, int(use.sum())), dtype=np.float32)  # each knot's filtered image
    for a in range(0, k, KNOT_BLOCK):
        hats = _hats(f, knots, np.arange(a, min(a + KNOT_BLOCK, k)))
        z[a:a + len(hats)] = np.fft.irfft2(spec[None] * hats, s=xp.shape)[crop][:, use]
    t = y[use].astype(np.float64)
    for a in range(0, z.shape[1], BLOCK_PIXELS):
        block = z[:, a:a + BLOCK_PIXELS].astype(np.float64)
        acc.gram[:k, :k] += block @ block.T
        acc.rhs[:k] += block @ t[a:a + BLOCK_PIXELS]
    acc.pixels += int(use.sum())
    regions = _check_regions(x, y, pixel_mm)
    if regions:
        low = np.nonzero(knots <= REGION_MAX_LPCM)[0]
        gauss = np.exp(-2.0 * (np.pi * LOWPASS_SIGMA_MM / 10.0 * f) ** 2)
        lp_basis = np.fft.irfft2(spec[None] * _hats(f, knots, low) * gauss[None],
                                 s=xp.shape)[crop]
        lp_y = lowpass(y, pixel_mm)
        lp_x = lowpass(np.clip(x, HU_MIN, HU_MAX), pixel_mm)
        for name, mask in regions.items():
            row = np.zeros(acc.size)
            row[low] = lp_basis[:, mask].sum(axis=1)
            acc.region_basis[name] = acc.region_basis.get(name, np.zeros(acc.size)) + row
            acc.region_target[name] = acc.region_target.get(name, 0.0) + float(lp_y[mask].sum())
            acc.region_input[name] = acc.region_input.get(name, 0.0) + float(lp_x[mask].sum())
            acc.region_pixels[name] = acc.region_pixels.get(name, 0) + int(mask.sum())


def accumulate(acc_xy: Accumulator, acc_yx: Accumulator, x: np.ndarray, y: np.ndarray,
               pixel_mm: float) -> None:
    """Add one slice pair (HU, same geometry, as stored) to both directions' sums."""
    tiles = _count_tiles(x, y)
    nyquist = 10.0 / (2.0 * pixel_mm)
    for acc, a, b in ((acc_xy, x, y), (acc_yx, y, x)):
        _add_direction(acc, a.astype(np.float64), b.astype(np.float64), pixel_mm)
        acc.tiles += tiles
        acc.slices += 1
        acc.nyquist = max(acc.nyquist, nyquist)


@dataclass
class TransferFit:
    """The fitted transfer from ``source`` to ``target`` (lp/cm)."""

    source: str
    target: str
    freq: np.ndarray  # knots, lp/cm, from 0
    h: np.ndarray  # fitted H at the knots (held beyond the last fitted one)
    fitted: np.ndarray  # bool: knot fitted from data
    tiles: int
    #: how it was fitted (:func:`solve`, :func:`invert`, a QA-phantom ratio)
    method: str = "least squares"
    #: per HU-check region of the calibration slices: the true target's low-pass shift and
    #: the fitted transfer's (HU), as the constraint left them
    region_shift: dict[str, dict[str, float]] = field(default_factory=dict)

    def points(self) -> list[list[float]]:
        """[[f, H], ...] up to the last fitted knot (the table's tabulated form)."""
        last = int(np.nonzero(self.fitted)[0].max()) if self.fitted.any() else 0
        return [[round(float(f), 4), round(float(h), 6)]
                for f, h in zip(self.freq[: last + 1], self.h[: last + 1], strict=True)]

    def __call__(self, f_lpcm: np.ndarray | float) -> np.ndarray:
        pts = np.asarray(self.points())
        return np.interp(np.abs(f_lpcm), pts[:, 0], pts[:, 1])


METHOD = "least squares on whole slices, HU-check regions held to the true target's shift"


def solve(acc: Accumulator, source: str, target: str, smooth: float | None = None,
          region_weight: float | None = None, pin_below_lpcm: float | None = None
          ) -> TransferFit:
    """The regularised, region-constrained least-squares transfer (module docstring).
    ``region_weight`` 0 is the plain least squares; ``pin_below_lpcm`` (default
    ``PIN_BELOW_LPCM``, None: nothing pinned) holds H = 1 at the knots up to that frequency
    (0: H(0) = 1 only), the curvature penalty blending the pinned part into the fitted one."""
    smooth = SMOOTH if smooth is None else smooth
    region_weight = REGION_WEIGHT if region_weight is None else region_weight
    pin_below_lpcm = PIN_BELOW_LPCM if pin_below_lpcm is None else pin_below_lpcm
    if acc.pixels == 0:
        raise ValueError(f"{source} -> {target}: no pixel of the pairs is inside the stored "
                         "window and the field of view")
    k = acc.size
    fitted = np.diag(acc.gram) > 0
    gram = acc.gram / acc.pixels
    rhs = acc.rhs / acc.pixels
    scale = float(np.mean(np.diag(gram)[fitted]))
    curv = np.diff(np.eye(k), 2, axis=0)
    a = gram + smooth * scale * curv.T @ curv
    b = rhs.copy()
    names = [n for n in CHECKED if acc.region_pixels.get(n)]
    if names and region_weight > 0:
        rows = np.array([acc.region_basis[n] / acc.region_pixels[n] for n in names])
        goal = np.array([acc.region_target[n] / acc.region_pixels[n] for n in names])
        norm = float(np.mean(np.sum(rows * rows, axis=1)))
        w = region_weight * scale / max(norm, 1e-300)
        a += w * rows.T @ rows
        b += w * rows.T @ goal
    a[~fitted, ~fitted] += 1.0  # knots no slice reaches stay at 0 (never written)
    pinned = np.zeros(k, bool)
    if pin_below_lpcm is not None and pin_below_lpcm >= 0:
        pinned = np.arange(k) * BIN_LPCM <= pin_below_lpcm + 1e-9
    h = np.ones(k)
    free = ~pinned
    h[free] = np.linalg.solve(a[np.ix_(free, free)], b[free] - a[np.ix_(free, pinned)] @ h[pinned])
    shift = {}
    for n in names:
        mean_in = acc.region_input[n] / acc.region_pixels[n]
        shift[n] = {"true_hu": round(acc.region_target[n] / acc.region_pixels[n] - mean_in, 3),
                    "fitted_hu": round(float(acc.region_basis[n] @ h) / acc.region_pixels[n]
                                       - mean_in, 3),
                    "pixels": acc.region_pixels[n]}
    freq = np.arange(k) * BIN_LPCM
    last = int(np.nonzero(fitted)[0].max()) if fitted.any() else 0
    h[last + 1:] = h[last]
    method = METHOD if names and region_weight > 0 else "least squares on whole slices"
    if pinned.any():
        method += f", H = 1 pinned up to {pin_below_lpcm:g} lp/cm"
    return TransferFit(source, target, freq, h, fitted, acc.tiles, method=method,
                       region_shift=shift)


@dataclass
class PairNoise:
    """Both kernels' noise on the same flat tiles of one pair."""

    soft: str
    sharp: str
    soft_noise: NoiseMeasurement
    sharp_noise: NoiseMeasurement

    @property
    def ratio(self) -> float:
        return self.sharp_noise.sd / self.soft_noise.sd


def pair_noise(x: np.ndarray, y: np.ndarray, kx: str, ky: str,
               pixel_mm: float) -> PairNoise | None:
    """Noise of both kernels of (B, H, W) slices ``x`` (kernel ``kx``) and ``y`` on tiles flat
    in the softer one (the one with the smaller high-pass RMS); None without flat tiles."""
    valid = unclipped(x) & unclipped(y)
    rough = [float(np.std(np.diff(im[valid]))) if valid.any() else 0.0 for im in (x, y)]
    soft_img, sharp_img, soft, sharp = (x, y, kx, ky) if rough[0] <= rough[1] else (y, x, ky, kx)
    tiles = flat_tiles(soft_img, pixel_mm, valid)
    a = measure_noise(soft_img, pixel_mm, tiles)
    b = measure_noise(sharp_img, pixel_mm, tiles)
    if a is None or b is None or a.sd <= 0:
        return None
    return PairNoise(soft, sharp, a, b)


def invert(fit: TransferFit) -> TransferFit:
    """The reverse transfer 1 / H of a fit (the QA-phantom calibration's sharp -> soft)."""
    return TransferFit(fit.target, fit.source, fit.freq, 1.0 / np.maximum(fit.h, 1e-6),
                       fit.fitted, fit.tiles,
                       method=f"inverse of the {fit.source} -> {fit.target} fit")


def soft_to_sharp(fit_ab: TransferFit, fit_ba: TransferFit) -> TransferFit:
    """Of the two directions' fits, the soft -> sharp one: the direction that gains
    (mean log H over the fitted knots above 0) sharpens."""
    gain = float(np.mean(np.log(np.maximum(fit_ab.h[fit_ab.fitted], 1e-6))))
    return fit_ab if gain > 0 else fit_ba
