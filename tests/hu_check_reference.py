"""The HU check's full-resolution definition, frozen as it was before the check was made
cheap (kernelconv/hu_check.py computes the same thing on a decimated grid): four full-size
FFT low-passes per slice, the local noise map at full resolution, masks and erosions on every
pixel. Used only by the tests that compare the two (tests/test_hu_check_agreement.py); slow.
"""

from __future__ import annotations

import numpy as np

from kernelconv.hu_check import (
    CLEAR_OF_FLOOR,
    ERODE_MM,
    FLOOR_HU,
    MIN_REGION_PIXELS,
    NOISE_SIGMA_MM,
    REGIONS,
    HuCheck,
    lowpass,
)


def local_noise_sd(hu: np.ndarray, pixel_mm: float) -> np.ndarray:
    """RMS of the residual after a ``NOISE_SIGMA_MM`` Gaussian, low-passed with the check's
    Gaussian (the image clipped at the floor first)."""
    clipped = np.maximum(hu.astype(np.float64), FLOOR_HU)
    resid = clipped - lowpass(clipped, pixel_mm, NOISE_SIGMA_MM)
    return np.sqrt(np.maximum(lowpass(resid * resid, pixel_mm), 0.0))


def erode(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Binary erosion by a square of half-width ``radius_px``; outside the image is False."""
    if radius_px <= 0:
        return mask
    out = mask.copy()
    for axis in (0, 1):
        acc = out.copy()
        for shift in range(1, radius_px + 1):
            for sign in (1, -1):
                rolled = np.roll(out, sign * shift, axis=axis)
                edge = [slice(None)] * 2
                edge[axis] = slice(0, shift) if sign > 0 else slice(-shift, None)
                rolled[tuple(edge)] = False
                acc &= rolled
        out = acc
    return out


def body(lp_in: np.ndarray) -> np.ndarray:
    """Above -500 HU, with enclosed low values filled row- and column-wise."""
    dense = lp_in > -500.0

    def span(mask: np.ndarray) -> np.ndarray:
        idx = np.arange(mask.shape[1])
        any_ = mask.any(axis=1)
        first = np.where(any_, np.argmax(mask, axis=1), mask.shape[1])
        last = np.where(any_, mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1), -1)
        return (idx[None, :] >= first[:, None]) & (idx[None, :] <= last[:, None])

    return span(dense) & span(dense.T).T


def reference_add(check: HuCheck, hu_in: np.ndarray, hu_out: np.ndarray,
                  pixel_mm: float) -> None:
    """``HuCheck.add`` as it was: one slice (H, W) or a stack (B, H, W), in HU."""
    if hu_in.ndim == 2:
        hu_in, hu_out = hu_in[None], hu_out[None]
    lp_in, lp_out = lowpass(hu_in, pixel_mm), lowpass(hu_out, pixel_mm)
    radius = int(round(ERODE_MM / pixel_mm))
    sd_in = local_noise_sd(hu_in, pixel_mm)
    sd_expected = sd_in * max(1.0, check.expected_noise_ratio or 1.0)
    clear = lp_in > FLOOR_HU + CLEAR_OF_FLOOR * sd_expected
    for a, b, raw_in, raw_out, ok in zip(lp_in, lp_out, hu_in, hu_out, clear, strict=True):
        inside = body(a)
        for name, (lo, hi) in REGIONS.items():
            mask = (a >= lo) & (a < hi)
            if name == "lung":
                mask &= inside
            if name != "air":
                mask &= ok
            mask = erode(mask, radius)
            n = int(mask.sum())
            if n >= MIN_REGION_PIXELS:
                check.sums[name] += float((b - a)[mask].sum())
                check.counts[name] += n
        soft = erode((a >= 0.0) & (a < 100.0), radius)
        if soft.sum() >= MIN_REGION_PIXELS:
            check.noise_in.append(float((raw_in - a)[soft].std()))
            check.noise_out.append(float((raw_out - b)[soft].std()))
