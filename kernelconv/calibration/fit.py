"""Fitting one kernel pair's transfer in physical frequency, and its noise.

Two reconstructions of the same raw data differ (for a linear, shift-invariant reconstruction)
by a radial filter: Y(f) = H(|f|) X(f). The fit is the least-squares H per ring of
``BIN_LPCM`` lp/cm, pooled over Hann-windowed ``TILE_PX`` tiles of every slice pair:

    H(f_k) = Re sum Y X* / sum |X|^2      (over the tiles and the frequency cells in ring k)

- In lp/cm, from each pair's own pixel spacing, so one fit holds for any spacing and pairs of
  several spacings pool.
- Robust to the stored window: a tile is used only when every pixel of both images lies
  strictly inside [-1024, 3071] HU (a clipped pixel is not a linear function of the other
  kernel's pixel), and out-of-field padding never enters.
- Regularised: H(0) = 1 (every kernel has MTF(0) = 1); a ring whose source power is below
  ``MIN_RELATIVE_POWER`` of the strongest ring, or beyond the finest pair's image Nyquist
  frequency, is not fitted (pairs of coarser pixels contribute the rings they have); rings are
  lightly smoothed (3-ring weighted mean). Beyond the last fitted ring the filter continues
  the transfer along the kernels' windows (:mod:`kernelconv.engines.filter_engine`).
- Being least squares, the soft -> sharp fit is the MMSE linear prediction: where the soft
  kernel kept little signal it does not amplify what is only rounding noise.
- The sharp -> soft transfer is the INVERSE of the soft -> sharp fit (:func:`invert`), not
  the least squares of soft on sharp: the sharp image carries noise the soft one does not
  (its own high-frequency noise aliased below the image Nyquist frequency), and regressing
  on a noisy variable biases the slope towards zero (regression dilution). Measured on
  simulated B70f/B30f pairs, whose true ratio is known: the direct fit was 6-12 % low at
  2-6 lp/cm and converted held-out B70f to 49.62 dB against the exact windows' 50.21; the
  inverse was within 1.5 % up to 3 lp/cm and 6 % up to 6 lp/cm, and reached 50.12 dB (real phantom FC51 -> FC13:
  54.81 -> 55.26 dB and 51.13 -> 51.14 dB).

Noise: each kernel's noise SD and NPS on the tiles that are flat in the pair's softer image and
unclipped in both (:mod:`kernelconv.noise`), so the ratio of the two is measured on the same
patches of the same scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kernelconv.noise import NoiseMeasurement, flat_tiles, freq2d, measure_noise, unclipped

TILE_PX = 64
BIN_LPCM = 0.25
MIN_RELATIVE_POWER = 1e-5


@dataclass
class Accumulator:
    """Sums of one direction's least-squares fit (rings of ``BIN_LPCM`` from 0)."""

    num: np.ndarray = field(default_factory=lambda: np.zeros(0))
    den: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tiles: int = 0
    nyquist: float = 0.0  # highest image Nyquist frequency (lp/cm) of the pooled pairs

    def add(self, ring: np.ndarray, num: np.ndarray, den: np.ndarray, nyquist: float) -> None:
        size = int(ring.max()) + 1
        if len(self.num) < size:
            self.num = np.pad(self.num, (0, size - len(self.num)))
            self.den = np.pad(self.den, (0, size - len(self.den)))
        np.add.at(self.num, ring, num)
        np.add.at(self.den, ring, den)
        self.tiles += 1
        self.nyquist = max(self.nyquist, nyquist)


def tile_grid(shape: tuple[int, int], n: int) -> list[tuple[int, int]]:
    step = n // 2
    return [(i, j) for i in range(0, shape[0] - n + 1, step)
            for j in range(0, shape[1] - n + 1, step)]


def accumulate(acc_xy: Accumulator, acc_yx: Accumulator, x: np.ndarray, y: np.ndarray,
               pixel_mm: float) -> None:
    """Add one slice pair (HU, same geometry) to both directions' sums."""
    n = min(TILE_PX, *x.shape)
    w = np.hanning(n)[:, None] * np.hanning(n)[None, :]
    ring = np.floor(freq2d(n, pixel_mm) / BIN_LPCM + 0.5).astype(int).ravel()
    valid = unclipped(x) & unclipped(y)
    nyquist = 10.0 / (2.0 * pixel_mm)
    for i, j in tile_grid(x.shape, n):
        if not valid[i:i + n, j:j + n].all():
            continue
        a, b = x[i:i + n, j:j + n], y[i:i + n, j:j + n]
        if a.std() < 1e-6 or b.std() < 1e-6:
            continue
        fa = np.fft.fft2((a - a.mean()) * w).ravel()
        fb = np.fft.fft2((b - b.mean()) * w).ravel()
        cross = (fb * np.conj(fa)).real
        acc_xy.add(ring, cross, np.abs(fa) ** 2, nyquist)
        acc_yx.add(ring, cross, np.abs(fb) ** 2, nyquist)


@dataclass
class TransferFit:
    """The fitted transfer from ``source`` to ``target`` (lp/cm)."""

    source: str
    target: str
    freq: np.ndarray  # ring centres, lp/cm, from 0
    h: np.ndarray  # fitted H (held beyond the last fitted ring)
    fitted: np.ndarray  # bool: ring fitted from data
    tiles: int
    #: "least squares" or "inverse of the soft -> sharp least squares" (:func:`invert`)
    method: str = "least squares"

    def points(self) -> list[list[float]]:
        """[[f, H], ...] up to the last fitted ring (the table's tabulated form)."""
        last = int(np.nonzero(self.fitted)[0].max()) if self.fitted.any() else 0
        return [[round(float(f), 4), round(float(h), 6)]
                for f, h in zip(self.freq[: last + 1], self.h[: last + 1], strict=True)]

    def __call__(self, f_lpcm: np.ndarray | float) -> np.ndarray:
        pts = np.asarray(self.points())
        return np.interp(np.abs(f_lpcm), pts[:, 0], pts[:, 1])


def solve(acc: Accumulator, source: str, target: str) -> TransferFit:
    """The regularised least-squares transfer from an accumulator (module docstring)."""
    if acc.tiles == 0:
        raise ValueError(f"{source} -> {target}: no tile of the pairs is free of clipped or "
                         "padding pixels")
    freq = np.arange(len(acc.num)) * BIN_LPCM
    fitted = (acc.den > MIN_RELATIVE_POWER * acc.den[1:].max()) & (freq <= acc.nyquist)
    fitted[0] = True
    raw = np.where(fitted, acc.num / np.maximum(acc.den, 1e-300), 0.0)
    raw[0] = 1.0
    h = raw.copy()
    for k in range(1, len(h)):  # 3-ring mean weighted by source power, fitted rings only
        ids = [m for m in (k - 1, k, k + 1) if 0 < m < len(h) and fitted[m]]
        if fitted[k] and ids:
            h[k] = float(np.average(raw[ids], weights=acc.den[ids]))
    last = 0.0
    for k in range(len(h)):  # hold the last fitted value beyond it
        if fitted[k]:
            last = h[k]
        else:
            h[k] = last
    return TransferFit(source, target, freq, h, fitted, acc.tiles)


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
    """The reverse transfer 1 / H of a (soft -> sharp) fit (module docstring)."""
    return TransferFit(fit.target, fit.source, fit.freq, 1.0 / np.maximum(fit.h, 1e-6),
                       fit.fitted, fit.tiles,
                       method=f"inverse of the {fit.source} -> {fit.target} least squares")


def soft_to_sharp(fit_ab: TransferFit, fit_ba: TransferFit) -> TransferFit:
    """Of the two directions' fits, the soft -> sharp one: the direction that gains
    (mean H over the fitted rings above 1) sharpens."""
    gain = float(np.mean(np.log(np.maximum(fit_ab.h[fit_ab.fitted], 1e-6))))
    return fit_ab if gain > 0 else fit_ba
