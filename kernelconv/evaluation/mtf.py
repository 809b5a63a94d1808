"""Presampled MTF from an oversampled circular edge, and noise SD in a uniform region.

The circular-edge method: every pixel near the edge of a high-contrast rod is placed by its
distance from the rod's centre; averaging in bins of a quarter pixel gives an oversampled edge
spread function (ESF) free of the pixel grid's sampling, its derivative the line spread function
(LSF, Hann-windowed), and the modulus of the LSF's Fourier transform, normalised at zero
frequency, the presampled MTF, corrected for the blur of the binning and the finite difference.
Several slices are pooled to beat the noise down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MtfResult:
    freq_lpcm: np.ndarray
    mtf: np.ndarray
    mtf50: float
    mtf10: float
    peak: float


def _crossing(freq: np.ndarray, mtf: np.ndarray, level: float) -> float:
    below = np.nonzero(mtf < level)[0]
    if len(below) == 0:
        return float("nan")
    i = int(below[0])
    if i == 0:
        return 0.0
    return float(np.interp(level, [mtf[i], mtf[i - 1]], [freq[i], freq[i - 1]]))


def rod_centre(image: np.ndarray, threshold: float, near: tuple[float, float],
               radius_px: float) -> tuple[float, float]:
    """Centroid (row, col) of pixels above ``threshold`` within ``radius_px`` of ``near``."""
    rows, cols = np.indices(image.shape, sparse=False)
    rows, cols = rows.astype(np.float64), cols.astype(np.float64)
    region = (rows - near[0]) ** 2 + (cols - near[1]) ** 2 <= radius_px**2
    mask = region & (image > threshold)
    if mask.sum() < 10:
        raise ValueError("no high-contrast rod found near the expected position")
    return float(rows[mask].mean()), float(cols[mask].mean())


def circular_edge_mtf(
    images: list[np.ndarray],
    pixel_mm: float,
    centre_guess: tuple[float, float],
    rod_radius_mm: float,
    threshold_hu: float,
    half_width_mm: float = 8.0,
    bins_per_pixel: int = 4,
) -> MtfResult:
    """Presampled MTF (lp/cm) from the circular edge of a rod, pooled over ``images``."""
    dist_all, val_all = [], []
    r_px = rod_radius_mm / pixel_mm
    for img in images:
        cy, cx = rod_centre(img, threshold_hu, centre_guess, 1.5 * r_px)
        rows, cols = np.indices(img.shape)
        r = np.hypot(rows - cy, cols - cx) * pixel_mm - rod_radius_mm
        keep = np.abs(r) <= half_width_mm
        dist_all.append(r[keep])
        val_all.append(img[keep].astype(np.float64))
    dist = np.concatenate(dist_all)
    val = np.concatenate(val_all)
    step = pixel_mm / bins_per_pixel
    edges = np.arange(-half_width_mm, half_width_mm + step, step)
    idx = np.digitize(dist, edges) - 1
    n = len(edges) - 1
    sums = np.bincount(idx.clip(0, n - 1), weights=val, minlength=n)
    counts = np.bincount(idx.clip(0, n - 1), minlength=n)
    centres = edges[:-1] + step / 2
    ok = counts > 0
    esf = np.interp(centres, centres[ok], sums[ok] / counts[ok])
    lsf = -np.gradient(esf, step)  # rod (bright) inside: ESF falls outward
    lsf *= np.hanning(len(lsf))
    n_fft = 8 * len(lsf)  # zero-padding: a finely sampled curve for the crossings
    spectrum = np.abs(np.fft.rfft(lsf, n_fft))
    freq = np.fft.rfftfreq(n_fft, d=step) * 10.0  # cycles/mm -> lp/cm
    # undo the measurement's own blur: bin averaging (box of one bin) and the central
    # difference (transfer sin(2 pi f h) / (2 pi f h)), as the standard presampled-MTF
    # correction does
    f_mm = freq / 10.0
    correction = np.sinc(f_mm * step) * np.sinc(2.0 * f_mm * step)
    mtf = spectrum / spectrum[0] / np.maximum(correction, 0.2)
    limit = freq <= 0.5 / pixel_mm * 10.0 * 2  # up to twice the image Nyquist
    freq, mtf = freq[limit], mtf[limit]
    return MtfResult(freq, mtf, _crossing(freq, mtf, 0.5), _crossing(freq, mtf, 0.1),
                     float(mtf.max()))


def roi_noise_sd(images: list[np.ndarray], centre_px: tuple[float, float],
                 radius_px: float) -> float:
    """Mean over images of the HU standard deviation in a circular ROI."""
    rows, cols = np.indices(images[0].shape)
    roi = (rows - centre_px[0]) ** 2 + (cols - centre_px[1]) ** 2 <= radius_px**2
    return float(np.mean([img[roi].std() for img in images]))
