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
kernel pair predicts from the response table. Used by the pipeline (``convert`` and
``listen``) and by the evaluation tools.

How it is computed (:meth:`HuCheck.add`). The definition above, computed as written (four
full-size float64 low-passes per slice, masks and erosions pixel by pixel: the reference in
tests/hu_check_reference.py), costs 22-24 ms of CPU per 512 x 512 slice on the 2-core
development machine, six times the filter's conversion. The same quantities cost 7.5-8.5 ms:

- the low-pass is linear, so the output's is never taken: the difference output - input is
  low-passed once (``lowpass(out) - lowpass(in) = lowpass(out - in)``);
- the input's spectrum is transformed once and serves both its 2.5 mm low-pass and the 1 mm
  residual of the local noise map (the pipeline's input is already clipped at the floor;
  an input below it gets a second transform, clipped);
- the difference's low-pass has nothing left at the Nyquist frequency of a grid of
  ``COARSE_MM``: its spectrum is cropped to that grid, transformed back there (exact samples
  every ``k`` pixels) and interpolated bilinearly;
- the local noise map's 2.5 mm low-pass of the squared 1 mm residual is taken on k x k block
  means (the blocks' box is taken out of the Gaussian: sigma^2 - (K^2 - p^2) / 12) and
  interpolated back; it only decides which pixels are clear of the floor;
- the input's low-pass stays exact at full resolution, so the regions, their erosions and the
  body outline follow the definition's thresholds pixel by pixel (up to float32 rounding;
  only the clear-of-floor rule uses the interpolated noise map). Interpolating it too moved
  the air region's mean by up to 1.3 HU at the edge of the field of view, where the "air
  bias" of a conversion is hundreds of HU;
- the FFTs are scipy's in float32; the slices of a batch are checked side by side on
  ``WORKERS`` threads (and added up in their order); erosions are one AND per doubling of
  the window on all five masks packed in the bits of one byte.

Against the definition (tests/test_hu_check_agreement.py: real slices and series of four
scanners, the filter both ways, a +12 HU shift, true kernel changes, decimation by 1-5, odd
matrix sizes; the default model's conversions): the same verdicts, biases within 0.01 HU in
soft tissue, fat and lung and 0.06 HU in air, noise ratios within 0.03 %.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
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

#: the coarse grid's pixel (mm) at most: the difference's low-pass and the local noise map
#: are computed on blocks of k x k pixels, k the largest 5-smooth integer with k * pixel at
#: most this (the Gaussian is below 1e-6 at its Nyquist frequency)
COARSE_MM = 1.42
#: threads of the check: the slices of a batch are checked side by side (each slice's FFTs
#: on one thread; a single slice's on all of them)
WORKERS = os.cpu_count() or 1


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


def checked_regions(hu_in: np.ndarray, pixel_mm: float,
                    expected_noise_ratio: float | None = None) -> dict[str, np.ndarray]:
    """The pixels of one (H, W) slice that the check judges, per checked region (soft tissue,
    fat, lung), at full resolution: the definition (regions of the low-passed input, the
    floor rule with the expected noise ratio, the body for lung, erosion, the fewest pixels),
    for callers that need the masks themselves (the site calibration holds its fit to the
    true target's shift in these regions). A region with too few pixels is left out."""
    x = np.clip(hu_in.astype(np.float64), FLOOR_HU, None)
    lp_in = lowpass(x, pixel_mm)
    ratio = max(1.0, expected_noise_ratio or 1.0)
    clear = lp_in > FLOOR_HU + CLEAR_OF_FLOOR * local_noise_sd(x, pixel_mm) * ratio
    radius = int(round(ERODE_MM / pixel_mm))
    body = _body(lp_in)
    out = {}
    for name in CHECKED:
        lo, hi = REGIONS[name]
        mask = (lp_in >= lo) & (lp_in < hi) & clear
        if name == "lung":
            mask &= body
        mask = _erode(mask, radius)
        if int(mask.sum()) >= MIN_REGION_PIXELS:
            out[name] = mask
    return out


def _smooth_multiple(n: int, k: int) -> int:
    """Smallest 5-smooth multiple of ``k`` (itself 5-smooth) that is >= n."""
    n = max(n, k)
    n += -n % k
    while _fast_len(n) != n:
        n += k
    return n


def _coarse_factor(pixel_mm: float, shape: tuple[int, int]) -> int:
    """k: the largest 5-smooth integer with k * pixel_mm <= ``COARSE_MM``, and at least 8
    coarse pixels across."""
    k = max(1, min(int(COARSE_MM / pixel_mm + 1e-9), min(shape) // 8))
    while _fast_len(k) != k:
        k -= 1
    return k


@functools.lru_cache(maxsize=32)
def _transfer32(shape: tuple[int, int], pixel_mm: float, sigma_mm: float, k: int = 1
                ) -> np.ndarray:
    """:func:`_gaussian_transfer` in float32; with ``k`` > 1 only on the frequencies of a grid
    ``k`` times coarser (:func:`_coarse_spectrum`'s), divided by k^2 (an inverse transform on
    the coarse grid then samples the low-pass every ``k`` pixels)."""
    full = _gaussian_transfer(shape, pixel_mm, sigma_mm)
    if k > 1:
        full = _coarse_spectrum(full, k, shape[1]) / (k * k)
    return full.astype(np.float32)


def _coarse_spectrum(spec: np.ndarray, k: int, width: int) -> np.ndarray:
    """The frequencies of an rfft2 spectrum (P, width // 2 + 1) that a grid ``k`` times
    coarser holds."""
    p = spec.shape[0]
    pc, cols = p // k, width // k // 2 + 1
    return np.concatenate([spec[:(pc + 1) // 2, :cols], spec[p - pc // 2:, :cols]])


def _lowpass32(x: np.ndarray, pixel_mm: float, sigma_mm: float, workers: int) -> np.ndarray:
    """:func:`lowpass` of one (H, W) image with scipy's FFT in float32 (the same padding) on
    ``workers`` threads."""
    from scipy import fft

    pad = int(np.ceil(3.0 * sigma_mm / pixel_mm))
    h, w = x.shape
    pad = min(pad, h - 1, w - 1)
    ph, pw = _fast_len(h + 2 * pad) - h - pad, _fast_len(w + 2 * pad) - w - pad
    if ph > h - 1 or pw > w - 1:
        ph = pw = pad
    xp = np.pad(x, ((pad, ph), (pad, pw)), mode="reflect")
    spec = fft.rfft2(xp, workers=workers)
    spec *= _transfer32(xp.shape, pixel_mm, sigma_mm)
    return fft.irfft2(spec, s=xp.shape, workers=workers)[pad:pad + h, pad:pad + w]  # type: ignore[no-any-return]


def _block_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Means over k x k blocks of (H, W) ``x`` (edge values repeated to whole blocks)."""
    if k == 1:
        return x
    h, w = x.shape
    if h % k or w % k:
        x = np.pad(x, ((0, -h % k), (0, -w % k)), mode="edge")
    rows = x[0::k]
    for i in range(1, k):
        rows = rows + x[i::k]
    out = rows[:, 0::k]
    for i in range(1, k):
        out = out + rows[:, i::k]
    return out * np.float32(1.0 / (k * k))  # type: ignore[no-any-return]


def _interpolate(c: np.ndarray, k: int, first: float, size: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of (h, w) samples ``c`` taken every ``k`` pixels, sample 0 at
    pixel ``first`` (both axes), onto ``size`` pixels; constant beyond the outer samples. The
    pixels of one phase (j = m k + p) share their weights: two slices and two passes each;
    columns first, on the fewer rows."""
    out = c
    for axis, n in ((1, size[1]), (0, size[0])):
        m = out.shape[axis]
        phases = []
        for p in range(min(k, n)):
            t = (p - first) / k
            o = int(np.floor(t))
            phases.append((p, o, float(t - o), len(range(p, n, k))))
        edge = max([0] + [max(-o, count + o - m + 1) for _, o, _, count in phases])
        if edge:
            ends = [np.repeat(np.take(out, [i], axis), edge, axis) for i in (0, m - 1)]
            out = np.concatenate([ends[0], out, ends[1]], axis=axis)
        shape = list(out.shape)
        shape[axis] = n
        res = np.empty(shape, np.float32)
        for p, o, f, count in phases:
            lo, hi, dst = [slice(None)] * 2, [slice(None)] * 2, [slice(None)] * 2
            lo[axis] = slice(o + edge, o + edge + count)
            hi[axis] = slice(o + edge + 1, o + edge + 1 + count)
            dst[axis] = slice(p, None, k)
            view = res[tuple(dst)]
            np.multiply(out[tuple(hi)], np.float32(f), out=view)
            view += out[tuple(lo)] * np.float32(1.0 - f)
        out = res
    return out


def _lowpasses(hu_in: np.ndarray, hu_out: np.ndarray, pixel_mm: float, workers: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input's 2.5 mm low-pass, the low-pass of output - input and the input's local noise
    SD (:func:`local_noise_sd`) of one (H, W) slice, float32 each (module docstring: how);
    FFTs on ``workers`` threads."""
    from scipy import fft

    x = hu_in.astype(np.float32)
    h, w = x.shape
    k = _coarse_factor(pixel_mm, (h, w))
    pad = min(int(np.ceil(3.0 * LOWPASS_SIGMA_MM / pixel_mm)), h - 1, w - 1)
    p, q = _smooth_multiple(h + 2 * pad, k), _smooth_multiple(w + 2 * pad, k)
    if p - h - pad > h - 1 or q - w - pad > w - 1:  # tiny images: no decimation
        k, p, q = 1, h + 2 * pad, w + 2 * pad

    def spectrum(v: np.ndarray) -> np.ndarray:
        v = np.pad(v, ((pad, p - h - pad), (pad, q - w - pad)), mode="reflect")
        return fft.rfft2(v, workers=workers)  # type: ignore[no-any-return]

    def back(spec: np.ndarray, sigma_mm: float) -> np.ndarray:
        spec = spec * _transfer32((p, q), pixel_mm, sigma_mm)
        return fft.irfft2(spec, s=(p, q), workers=workers)[pad:pad + h, pad:pad + w]  # type: ignore[no-any-return]

    spec_in = spectrum(x)
    lp_in = back(spec_in, LOWPASS_SIGMA_MM)
    # the local noise map: the 1 mm residual from the same spectrum (unless something is below
    # the floor), its square low-passed on k x k block means and interpolated back
    clipped = np.maximum(x, np.float32(FLOOR_HU)) if float(x.min()) < FLOOR_HU else x
    resid = clipped - back(spectrum(clipped) if clipped is not x else spec_in, NOISE_SIGMA_MM)
    pitch = k * pixel_mm
    sigma = float(np.sqrt(LOWPASS_SIGMA_MM ** 2 - (pitch ** 2 - pixel_mm ** 2) / 12.0))
    var = _lowpass32(_block_mean(resid * resid, k), pitch, sigma, workers)
    sd = np.sqrt(np.maximum(var, np.float32(0.0)))
    sd_in = sd if k == 1 else _interpolate(sd, k, (k - 1) / 2.0, (h, w))
    # the difference: its spectrum cropped, back on the coarse grid (sample i at pixel
    # i k - pad), interpolated
    spec_diff = spectrum(hu_out.astype(np.float32) - x)
    if k == 1:
        return lp_in, back(spec_diff, LOWPASS_SIGMA_MM), sd_in
    coarse = fft.irfft2(_coarse_spectrum(spec_diff, k, q) *
                        _transfer32((p, q), pixel_mm, LOWPASS_SIGMA_MM, k),
                        s=(p // k, q // k), workers=workers)
    return lp_in, _interpolate(coarse, k, -pad, (h, w)), sd_in


def _erode_axis(bits: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """AND of every ``2 radius + 1`` neighbours along ``axis`` (outside the image: 0), by
    doubling the window."""
    n = bits.shape[axis]
    widths = [(0, 0)] * bits.ndim
    widths[axis] = (radius, radius)
    cur = np.pad(bits, widths)
    length, width = 2 * radius + 1, 1

    def part(a: int, b: int) -> tuple[slice, ...]:
        sl = [slice(None)] * bits.ndim
        sl[axis] = slice(a, b)
        return tuple(sl)

    while 2 * width <= length:
        m = cur.shape[axis]
        cur = cur[part(0, m - width)] & cur[part(width, m)]
        width *= 2
    return cur[part(0, n)] & cur[part(length - width, length - width + n)]  # type: ignore[no-any-return]


def _region_bits(lp_in: np.ndarray, clear: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) uint8: bit i set where the pixel is in region i (``REGIONS`` order, as the
    module docstring says), bit ``len(REGIONS)`` in soft tissue without the floor rule (the
    noise figures'), each mask eroded by a square of half-width ``radius`` (outside the image
    counts as outside the region)."""
    bits = np.zeros(lp_in.shape, np.uint8)
    for bit, (name, (lo, hi)) in enumerate(REGIONS.items()):
        mask = (lp_in >= lo) & (lp_in < hi)
        if name == "soft tissue":
            bits |= mask.view(np.uint8) << np.uint8(len(REGIONS))
        if name == "lung" and mask.any():
            mask &= _body_fast(lp_in)
        if name != "air":
            mask &= clear
        bits |= mask.view(np.uint8) << np.uint8(bit)
    if radius > 0:
        bits = _erode_axis(_erode_axis(bits, radius, 0), radius, 1)
    return bits


def _body_fast(lp_in: np.ndarray) -> np.ndarray:
    """:func:`_body` (the same mask) with each axis' span found along contiguous rows."""
    dense = lp_in > -500.0

    def span(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hit = d.any(axis=1)
        first = np.where(hit, np.argmax(d, axis=1), d.shape[1]).astype(np.int32)
        last = np.where(hit, d.shape[1] - 1 - np.argmax(d[:, ::-1], axis=1), -1)
        return first, last.astype(np.int32)

    first_r, last_r = span(dense)
    first_c, last_c = span(np.ascontiguousarray(dense.T))
    i = np.arange(dense.shape[0], dtype=np.int32)[:, None]
    j = np.arange(dense.shape[1], dtype=np.int32)[None, :]
    return (j >= first_r[:, None]) & (j <= last_r[:, None]) & (i >= first_c) & (i <= last_c)  # type: ignore[no-any-return]


#: one slice's figures: (sum of the difference's low-pass, pixels) per region (None where too
#: few), and the SDs of the input's and the output's residual in soft tissue (None likewise)
SliceFigures = tuple[list[tuple[float, int] | None], tuple[float, float] | None]


def _slice_figures(raw_in: np.ndarray, raw_out: np.ndarray, pixel_mm: float,
                   noise_ratio: float, workers: int) -> SliceFigures:
    """The check's figures of one (H, W) slice (module docstring); ``noise_ratio``: how many
    times the input's local noise SD the output's is expected to be (at least 1)."""
    lp_in, lp_diff, sd_in = _lowpasses(raw_in, raw_out, pixel_mm, workers)
    # pixels where clipping at the floor cannot move the mean (module docstring). Decided
    # from the input alone, with the noise the kernel pair predicts for the output: a mask
    # that looked at the output would let a converter that moves a region down to the
    # floor, or adds noise, drop that region from its own check.
    clear = lp_in > np.float32(FLOOR_HU) + np.float32(CLEAR_OF_FLOOR * noise_ratio) * sd_in
    bits = _region_bits(lp_in, clear, int(round(ERODE_MM / pixel_mm)))
    diff = lp_diff.reshape(-1)
    regions: list[tuple[float, int] | None] = []
    for i in range(len(REGIONS)):
        mask = (bits >> np.uint8(i)) & np.uint8(1)
        n = int(np.count_nonzero(mask))
        regions.append((float(mask.reshape(-1).astype(np.float32) @ diff), n)
                       if n >= MIN_REGION_PIXELS else None)
    soft = (bits >> np.uint8(len(REGIONS))) & np.uint8(1)
    n = int(np.count_nonzero(soft))
    if n < MIN_REGION_PIXELS:
        return regions, None
    weight = soft.astype(np.float32)
    res_in = raw_in.astype(np.float32) - lp_in
    res_out = raw_out.astype(np.float32) - lp_in - lp_diff
    return regions, (_masked_sd(res_in, weight, n), _masked_sd(res_out, weight, n))


_POOL: list[ThreadPoolExecutor] = []
if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads
    os.register_at_fork(after_in_child=_POOL.clear)


def _pool() -> ThreadPoolExecutor:
    """The check's threads (made once, shared by every check)."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(WORKERS, "kc-hu-check"))
    return _POOL[0]


def _masked_sd(values: np.ndarray, mask: np.ndarray, n: int) -> float:
    """SD of the (H, W) ``values`` where the float32 0/1 ``mask`` is 1 (``n`` pixels)."""
    v = values.reshape(-1)
    kept = v * mask.reshape(-1)
    mean = float(kept.sum()) / n
    return float(np.sqrt(max(float(kept @ v) / n - mean * mean, 0.0)))


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
        ratio = max(1.0, self.expected_noise_ratio or 1.0)
        if len(hu_in) > 1 and WORKERS > 1:  # slices side by side, added up in their order
            n = len(hu_in)
            figures = list(_pool().map(_slice_figures, hu_in, hu_out, [pixel_mm] * n,
                                       [ratio] * n, [1] * n))
        else:
            figures = [_slice_figures(a, b, pixel_mm, ratio, WORKERS)
                       for a, b in zip(hu_in, hu_out, strict=True)]
        for regions, noise in figures:
            for name, region in zip(REGIONS, regions, strict=True):
                if region is not None:
                    self.sums[name] += region[0]
                    self.counts[name] += region[1]
            if noise is not None:
                self.noise_in.append(noise[0])
                self.noise_out.append(noise[1])

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
