"""The check on every converted series: a kernel change must not move local mean HU.

Every reconstruction kernel has MTF(0) = 1: two reconstructions of the same raw data with
different kernels agree in their low frequencies, so a correct conversion leaves the low-pass
image unchanged. For each slice the input and the output are low-passed with the same
Gaussian (``LOWPASS_SIGMA_MM``, in mm, so the check means the same at any pixel spacing) and
their difference is averaged inside regions of the low-passed input. The output is the
converter's, before it is clipped to the stored range.

Stored images are clipped at -1024 HU, and clipping the lower tail of noise raises the local
mean by an amount that grows with the noise: a true B70f reconstruction of a noisy lung base is
several HU "brighter" than the B30f of the same raw data, and a model trained on stored sharp
images learns that. So only pixels whose low-passed input lies at least ``CLEAR_OF_FLOOR``
noise SDs above the floor count, where the SD is the larger of the input's local noise (the
RMS of the residual after a 1 mm Gaussian, low-passed like the image) and that noise times
the kernel pair's predicted noise ratio (``expected_noise_ratio``); there the floor moves the
mean of input and of a correct output by less than 0.01 SD. The choice is made from the input
and the kernel pair only, never from the output: a converter that pushes a region towards the
floor or adds noise cannot remove that region from its own check. A noisy lung may leave too
few such pixels: it is then reported as not checked rather than judged. Measured on a real abdomen (pydicom's
explicit_VR-UN.dcm, lung base at about -900 HU) converted B30f -> B70f by the default model:
counting every lung pixel the check saw +7.3 HU and refused the series; with this rule its
noisy lung is not checked (soft tissue +0.1, fat -0.8 HU still are), while simulated pairs of
the same raw data (a true kernel change) keep 13,000 checked lung pixels per 3 slices at
+-0.2 HU (B30f <-> B70f).

===========  ====================================  =====================================
region       low-passed input HU                   checked against ``max_bias``
===========  ====================================  =====================================
soft tissue  0 .. 100                              yes
fat          -150 .. -50                           yes
lung         -950 .. -700 (inside the body)        yes
air          below -950                            reported only: the input is clipped at
                                                   -1024 HU (stored images are), which
                                                   raises the mean of noisy air
===========  ====================================  =====================================

Each region is eroded (``ERODE_MM``) so that edges between tissues, where a kernel change
legitimately moves the low-passed value a little, do not count. The output's noise (the
residual after the same low-pass, in soft tissue) is reported beside the noise ratio the
kernel pair predicts from the response table. Pure numpy; used by the pipeline (``convert``
and ``listen``) and by the evaluation tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: sigma (mm) of the Gaussian low-pass: about 1 lp/cm at half amplitude, far below where
#: kernels differ (B30f's MTF50 is 3.5 lp/cm), far above single-pixel noise
LOWPASS_SIGMA_MM = 2.5
#: erosion of each region (mm) so that tissue edges do not count
ERODE_MM = 4.0
#: default limit (HU) on the mean low-pass difference in soft tissue, fat and lung
DEFAULT_MAX_BIAS_HU = 5.0
#: the floor stored images are clipped at; pixels count only where the low-passed input is this
#: many expected output noise SDs above it (module docstring); the noise SD's scale (mm)
FLOOR_HU = -1024.0
CLEAR_OF_FLOOR = 2.5
NOISE_SIGMA_MM = 1.0
#: fewest pixels for a region to count in a slice
MIN_REGION_PIXELS = 200

REGIONS: dict[str, tuple[float, float]] = {
    "soft tissue": (0.0, 100.0),
    "fat": (-150.0, -50.0),
    "lung": (-950.0, -700.0),
    "air": (-np.inf, -950.0),
}
CHECKED = ("soft tissue", "fat", "lung")


def _gaussian_transfer(shape: tuple[int, int], pixel_mm: float, sigma_mm: float) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0], d=pixel_mm)
    fx = np.fft.rfftfreq(shape[1], d=pixel_mm)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    return np.exp(-2.0 * (np.pi * sigma_mm) ** 2 * f2)


def _fast_len(n: int) -> int:
    """Smallest 5-smooth integer >= n (an FFT length without large prime factors: 534, the
    padded size of a 512 slice at 0.68 mm, is 2 * 3 * 89 and three times slower than 540)."""
    n = max(n, 1)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def lowpass(hu: np.ndarray, pixel_mm: float, sigma_mm: float = LOWPASS_SIGMA_MM) -> np.ndarray:
    """Gaussian low-pass (sigma in mm) of a (H, W) or (B, H, W) image, reflect-padded."""
    pad = int(np.ceil(3.0 * sigma_mm / pixel_mm))
    squeeze = hu.ndim == 2
    x = hu[None] if squeeze else hu
    h, w = x.shape[-2:]
    pad = min(pad, h - 1, w - 1)
    ph, pw = _fast_len(h + 2 * pad) - h - pad, _fast_len(w + 2 * pad) - w - pad
    if ph > h - 1 or pw > w - 1:  # tiny images: reflect padding cannot reach a fast size
        ph = pw = pad
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, ph), (pad, pw)), mode="reflect")
    spec = np.fft.rfft2(xp) * _gaussian_transfer(xp.shape[-2:], pixel_mm, sigma_mm)[None]
    y = np.fft.irfft2(spec, s=xp.shape[-2:])[:, pad:pad + h, pad:pad + w]
    return y[0] if squeeze else y


def local_noise_sd(hu: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Local noise SD: RMS of the residual after a ``NOISE_SIGMA_MM`` Gaussian, low-passed
    with the check's Gaussian (the image clipped at the floor first, as stored)."""
    clipped = np.maximum(hu.astype(np.float64), FLOOR_HU)
    resid = clipped - lowpass(clipped, pixel_mm, NOISE_SIGMA_MM)
    return np.sqrt(np.maximum(lowpass(resid * resid, pixel_mm), 0.0))


def _erode(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Binary erosion by a square of half-width ``radius_px`` (separable min filter)."""
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


def _body(lp_in: np.ndarray) -> np.ndarray:
    """Inside the patient: above -500 HU, with enclosed low values (lungs) filled row- and
    column-wise (between the first and last body pixel of each row and of each column)."""
    dense = lp_in > -500.0

    def span(mask: np.ndarray) -> np.ndarray:
        idx = np.arange(mask.shape[1])
        any_ = mask.any(axis=1)
        first = np.where(any_, np.argmax(mask, axis=1), mask.shape[1])
        last = np.where(any_, mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1), -1)
        return (idx[None, :] >= first[:, None]) & (idx[None, :] <= last[:, None])

    return span(dense) & span(dense.T).T


@dataclass
class HuCheck:
    """Accumulates the check over the slices of one series."""

    max_bias: float = DEFAULT_MAX_BIAS_HU
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REGIONS, 0.0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REGIONS, 0))
    noise_in: list[float] = field(default_factory=list)
    noise_out: list[float] = field(default_factory=list)
    expected_noise_ratio: float | None = None

    def add(self, hu_in: np.ndarray, hu_out: np.ndarray, pixel_mm: float) -> None:
        """One slice (H, W) or a stack (B, H, W) before and after conversion, in HU."""
        if hu_in.ndim == 2:
            hu_in, hu_out = hu_in[None], hu_out[None]
        lp_in, lp_out = lowpass(hu_in, pixel_mm), lowpass(hu_out, pixel_mm)
        radius = int(round(ERODE_MM / pixel_mm))
        # pixels where clipping at the floor cannot move the mean (module docstring). Decided
        # from the input alone, with the noise the kernel pair predicts for the output: a
        # mask that looked at the output would let a converter that moves a region down to
        # the floor, or adds noise, drop that region from its own check.
        sd_in = local_noise_sd(hu_in, pixel_mm)
        sd_expected = sd_in * max(1.0, self.expected_noise_ratio or 1.0)
        clear = lp_in > FLOOR_HU + CLEAR_OF_FLOOR * sd_expected
        for a, b, raw_in, raw_out, ok in zip(lp_in, lp_out, hu_in, hu_out, clear, strict=True):
            body = _body(a)
            for name, (lo, hi) in REGIONS.items():
                mask = (a >= lo) & (a < hi)
                if name == "lung":
                    mask &= body
                if name != "air":  # air is reported only, where the floor dominates anyway
                    mask &= ok
                mask = _erode(mask, radius)
                n = int(mask.sum())
                if n >= MIN_REGION_PIXELS:
                    self.sums[name] += float((b - a)[mask].sum())
                    self.counts[name] += n
            soft = _erode((a >= 0.0) & (a < 100.0), radius)
            if soft.sum() >= MIN_REGION_PIXELS:
                self.noise_in.append(float((raw_in - a)[soft].std()))
                self.noise_out.append(float((raw_out - b)[soft].std()))

    @property
    def bias_hu(self) -> dict[str, float | None]:
        """Mean low-pass difference (output - input) per region, None where too few pixels."""
        return {k: (self.sums[k] / self.counts[k]) if self.counts[k] else None for k in REGIONS}

    @property
    def worst(self) -> tuple[str, float] | None:
        """The checked region with the largest absolute bias, and that bias."""
        checked = [(k, v) for k, v in self.bias_hu.items() if k in CHECKED and v is not None]
        return max(checked, key=lambda kv: abs(kv[1])) if checked else None

    @property
    def noise_ratio(self) -> float | None:
        """Output noise over input noise (SD of the residual after the low-pass, soft tissue)."""
        if not self.noise_in or np.mean(self.noise_in) <= 0:
            return None
        return float(np.mean(self.noise_out) / np.mean(self.noise_in))

    @property
    def passed(self) -> bool:
        worst = self.worst
        return worst is None or abs(worst[1]) <= self.max_bias

    def reason(self) -> str:
        """Why the series was refused (empty when it passed)."""
        worst = self.worst
        if worst is None or self.passed:
            return ""
        return (f"HU check failed: the conversion moved the local mean HU of {worst[0]} by "
                f"{worst[1]:+.1f} HU (limit {self.max_bias:g} HU, --max-bias); a kernel "
                "change must not move it, so the output would be wrong")

    def to_json(self) -> dict[str, object]:
        return {
            "bias_hu": {k: None if v is None else round(v, 2) for k, v in self.bias_hu.items()},
            "max_bias_hu": self.max_bias, "passed": self.passed,
            "noise_ratio": None if self.noise_ratio is None else round(self.noise_ratio, 3),
            "expected_noise_ratio": None if self.expected_noise_ratio is None
            else round(self.expected_noise_ratio, 3),
        }

    def summary(self) -> str:
        """One short line for the terminal: the worst bias and the noise ratio."""
        parts = []
        worst = self.worst
        if worst is not None:
            parts.append(f"bias {worst[1]:+.1f} HU ({worst[0]})")
        if self.noise_ratio is not None:
            expected = (f" (expected {self.expected_noise_ratio:.2f})"
                        if self.expected_noise_ratio is not None else "")
            parts.append(f"noise x{self.noise_ratio:.2f}{expected}")
        return ", ".join(parts)
