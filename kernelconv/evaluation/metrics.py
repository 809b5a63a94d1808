"""Per-slice image metrics for kernel conversion, in HU.

PSNR and SSIM follow the paper's setting: HU clipped to [-1024, 3071] and a data range of 4095
(PSNR 40 dB ~ 41 HU RMSE). SSIM is scikit-image's (Gaussian-free 7x7 window, the library
default), not a re-implementation.
"""

from __future__ import annotations

import numpy as np

from kernelconv.hu import HU_MAX, HU_MIN

DATA_RANGE = HU_MAX - HU_MIN  # 4095


def _clip(a: np.ndarray) -> np.ndarray:
    return np.clip(a.astype(np.float64), HU_MIN, HU_MAX)


def rmse(pred: np.ndarray, ref: np.ndarray) -> float:
    """Root-mean-square error in HU (after clipping to the paper's window)."""
    return float(np.sqrt(np.mean((_clip(pred) - _clip(ref)) ** 2)))


def mae(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean absolute error in HU (after clipping)."""
    return float(np.mean(np.abs(_clip(pred) - _clip(ref))))


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB over a 4095 HU data range; inf for identical images."""
    err = rmse(pred, ref)
    return float("inf") if err == 0.0 else float(20.0 * np.log10(DATA_RANGE / err))


def ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    """SSIM (scikit-image) of one 2-D slice over a 4095 HU data range."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_clip(pred), _clip(ref), data_range=DATA_RANGE))


def laa950(hu: np.ndarray, lung: np.ndarray) -> float:
    """LAA-950: percentage of lung pixels below -950 HU."""
    n = int(lung.sum())
    if n == 0:
        return float("nan")
    return float(100.0 * np.count_nonzero(hu[lung] < -950.0) / n)
