"""Image noise measured where the image is flat: the noise SD and noise power spectrum (NPS).

The one owner of "where is this image uniform enough to see its noise": `calibrate` measures
each kernel's noise and NPS on the tiles that are flat in a pair's softer image, and the
filter's soft -> sharp limit measures the input series' NPS on the tiles that are flat in the
input (:mod:`kernelconv.engines.filter_engine`).

A tile (``TILE_PX`` square, half-overlapping) is a candidate when every pixel lies inside the
stored window (no clipping at -1024 HU, no out-of-field padding) and its low-passed mean is in
the soft-tissue/fat/water range; its structure is the SD of its ``STRUCTURE_SIGMA_MM``
low-pass (noise is averaged out, edges and organs are not). The flattest candidates are kept:
those with structure below ``FLAT_STRUCTURE_HU``, or at least the flattest ``MIN_TILES``
(``FLAT_FRACTION`` of the candidates when more are needed). Each tile is detrended by
subtracting its low-pass, Hann-windowed, and its periodogram averaged: ``nps2d`` (HU^2 per
frequency cell, mean over the grid = variance of the windowed residual), on the grid given by
``freq2d`` (lp/cm). The SD reported is that of the residual, so it excludes frequencies below
about 1 lp/cm; in the ratio of two kernels measured on the same tiles that cancels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kernelconv.hu_check import lowpass

TILE_PX = 64
STRUCTURE_SIGMA_MM = 2.0
DETREND_SIGMA_MM = 4.0
FLAT_STRUCTURE_HU = 8.0
MIN_TILES = 4
FLAT_FRACTION = 0.25
TISSUE_RANGE_HU = (-250.0, 400.0)
#: the stored window: a pixel at or beyond it may be clipped, so its tile is not used
WINDOW_HU = (-1024.0, 3071.0)

Tile = tuple[int, int, int]  # (slice index, row, column) of the tile's top-left corner


def _hann2(n: int) -> np.ndarray:
    w = np.hanning(n)
    return w[:, None] * w[None, :]


def freq2d(n: int, pixel_mm: float) -> np.ndarray:
    """Radial frequency (lp/cm) of an n x n FFT grid at ``pixel_mm``."""
    f = np.fft.fftfreq(n, d=pixel_mm) * 10.0
    return np.hypot(f[:, None], f[None, :])


def unclipped(images: np.ndarray) -> np.ndarray:
    """True where a pixel is strictly inside the stored window (not clipped, not padding)."""
    return (images > WINDOW_HU[0]) & (images < WINDOW_HU[1])


def flat_tiles(images: np.ndarray, pixel_mm: float, valid: np.ndarray | None = None,
               tile_px: int = TILE_PX) -> list[Tile]:
    """The flattest tissue tiles of (B, H, W) ``images`` (module docstring); ``valid`` (same
    shape, default :func:`unclipped`) marks the pixels a tile may contain."""
    ok = unclipped(images) if valid is None else valid
    n = min(tile_px, images.shape[-2], images.shape[-1])
    step = max(n // 2, 1)
    cands: list[tuple[float, Tile]] = []
    for b in range(images.shape[0]):
        lp = lowpass(np.clip(images[b], *WINDOW_HU), pixel_mm, STRUCTURE_SIGMA_MM)
        for i in range(0, images.shape[-2] - n + 1, step):
            for j in range(0, images.shape[-1] - n + 1, step):
                if not ok[b, i:i + n, j:j + n].all():
                    continue
                t = lp[i:i + n, j:j + n]
                if not TISSUE_RANGE_HU[0] < float(t.mean()) < TISSUE_RANGE_HU[1]:
                    continue
                cands.append((float(t.std()), (b, i, j)))
    cands.sort(key=lambda c: c[0])
    flat = [tile for s, tile in cands if s <= FLAT_STRUCTURE_HU]
    want = max(MIN_TILES, int(np.ceil(FLAT_FRACTION * len(cands))) if len(flat) < MIN_TILES
               else 0)
    if len(flat) < want:
        flat = [tile for _, tile in cands[:want]]
    return flat


@dataclass
class NoiseMeasurement:
    """Noise of one image set on a set of tiles."""

    sd: float  # HU, SD of the detrended tiles (inside the Hann window, normalised)
    nps2d: np.ndarray  # (n, n), mean = sd ** 2
    pixel_mm: float
    tiles: int

    @property
    def n(self) -> int:
        return int(self.nps2d.shape[0])

    def radial(self, bin_lpcm: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
        """(frequency lp/cm, NPS in HU^2 cm^2) averaged over rings up to the image Nyquist."""
        f = freq2d(self.n, self.pixel_mm)
        nyquist = 10.0 / (2.0 * self.pixel_mm)
        edges = np.arange(0.0, nyquist + bin_lpcm, bin_lpcm)
        idx = np.digitize(f.ravel(), edges) - 1
        cell_cm2 = (self.pixel_mm / 10.0) ** 2
        values = self.nps2d.ravel() * cell_cm2
        sums = np.bincount(idx, values, minlength=len(edges))[: len(edges) - 1]
        counts = np.bincount(idx, minlength=len(edges))[: len(edges) - 1]
        keep = counts > 0
        centres = 0.5 * (edges[:-1] + edges[1:])
        return centres[keep], sums[keep] / counts[keep]

    def sd_after(self, transfer: np.ndarray) -> float:
        """Predicted SD after a radial filter whose transfer on :func:`freq2d`'s grid is
        ``transfer`` (same shape as ``nps2d``)."""
        return float(np.sqrt(np.mean(self.nps2d * transfer * transfer)))


def measure_noise(images: np.ndarray, pixel_mm: float, tiles: Sequence[Tile],
                  tile_px: int = TILE_PX) -> NoiseMeasurement | None:
    """Noise SD and NPS of (B, H, W) ``images`` on ``tiles`` (None when there are none)."""
    if not tiles:
        return None
    n = min(tile_px, images.shape[-2], images.shape[-1])
    w = _hann2(n)
    norm = float(np.mean(w * w))
    acc = np.zeros((n, n))
    detrended: dict[int, np.ndarray] = {}
    for b, i, j in tiles:
        if b not in detrended:
            img = images[b].astype(np.float64)
            detrended[b] = img - lowpass(img, pixel_mm, DETREND_SIGMA_MM)
        t = detrended[b][i:i + n, j:j + n]
        acc += np.abs(np.fft.fft2((t - t.mean()) * w)) ** 2
    nps = acc / (len(tiles) * n * n * norm)
    return NoiseMeasurement(float(np.sqrt(nps.mean())), nps, pixel_mm, len(tiles))
