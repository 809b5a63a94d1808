"""The HU check's full-resolution definition, ``HuCheck.add`` as it was before the check was
made cheap: four full-size float64 FFT low-passes per slice, the local noise map at full
resolution, masks and erosions pixel by pixel. Its building blocks are the module's own,
unchanged (``lowpass``, ``local_noise_sd``, ``_erode``, ``_body``: the definitions the module
docstring states, also used by the benchmarks). Used only by the tests that compare the two
(tests/test_hu_check_agreement.py); slow.
"""

from __future__ import annotations

import numpy as np

from kernelconv.hu_check import (
    CLEAR_OF_FLOOR,
    ERODE_MM,
    FLOOR_HU,
    MIN_REGION_PIXELS,
    REGIONS,
    HuCheck,
    local_noise_sd,
    lowpass,
)
from kernelconv.hu_check import _body as body
from kernelconv.hu_check import _erode as erode


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
