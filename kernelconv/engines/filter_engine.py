"""The classical baseline: image-domain conversion by the ratio of the kernels' MTFs.

Ohkubo et al. (Med Phys 2011) convert between kernels by multiplying the image spectrum with
MTF_target(f) / MTF_source(f). Everything between the object and the filter (detector
aperture, focal spot) is common to both kernels and cancels, so the ratio is the ratio of the
kernels' windows W_target / W_source from the kernel response table
(kernelconv.kernel_response). Where the source attenuates a frequency that the target keeps
(soft -> sharp) the ratio explodes with the noise, so the filter is regularised Wiener-style:

    H(f) = W_t(f) W_s(f) / (W_s(f)^2 + lambda (f / 10 lp/cm)^2)

with lambda = SHARP_TO_SOFT_LAMBDA (tiny: practically the exact ratio) when the target is
softer, SOFT_TO_SHARP_LAMBDA when it is sharper; the regularisation grows with frequency, as
the noise-to-signal ratio does, so H(0) = 1 and mean HU are kept exactly. Noise texture is not
restored (it cannot be: the soft kernel removed it). Exact for parallel-beam FBP of the
simulator, an approximation on real scanners whose kernels the table only approximates. No
learned parameters.

Two safeguards for real images (extensions, on by default; ``FilterEngine(noise_limit=False)``
is the plain filter, which the filter_residual model's base filter stays):

- Out-of-field padding (pixels at or below ``PADDING_HU``: the -2048/-3024 HU that scanners
  store outside the reconstruction circle; no tissue and no noise reaches it) is filled with
  -1024 HU before filtering and kept as it was in the output. Filtering the 1000 HU step at
  the circle's edge rang into the image: on the real Canon phantom FC51 -> FC13 (read as B70f
  -> B30f) PSNR 44.46/46.30 dB unfilled, 45.68/46.96 dB filled.
- Soft -> sharp noise limit: an assumed kernel pair can ask for more sharpening than the
  source image supports; the filter then amplifies the soft kernel's residual noise (and the
  1 HU rounding of stored values) far beyond the target kernel's noise. Each input slice's
  noise power spectrum is measured on its flattest tissue tiles (:mod:`kernelconv.noise`;
  per slice, so that a slice's result does not depend on the others in its batch); lambda is
  raised until the predicted output noise SD is at most the input's SD times the noise ratio
  the kernel pair's windows predict, lowered by the kernels' stated uncertainty
  (:func:`~kernelconv.kernel_response.allowed_noise_ratio`), so an uncertain assumption errs
  towards too little sharpening, never towards more noise than the target kernel has. Without enough flat tiles the FBP noise model of the windows predicts
  the gain instead. The lambda used is reported (``last_limit``).

With a site's calibration (``kernelconv calibrate``; ``transfers``) the filter converts a
calibrated kernel pair with its fitted transfer, the least-squares fit on the site's own
reconstructions, which needs neither the Wiener term nor the noise limit.

Where it runs: on the CPU with numpy (the default, ``device="cpu"``), or, for a CUDA device
(``--device cuda``; ``auto`` where a GPU is present), with torch on that device: the padding,
the real FFT pair and the transfer multiply in float64 there, the noise limit's measurement on
64 px tiles on the host. float64 because the results must be those of the numpy path: on the
CPU, torch's float64 path gave the numpy path's float32 output exactly on the bundled real
slices (Canon phantom both ways, Siemens chest, B70f -> B30f/B50f), float32 FFTs differed by
up to 0.004 HU and moved 20-80 pixels per 512 x 512 slice to the other integer when stored.
So the method id does not depend on the device (the GPU suite's correctness step measures both
on CUDA: ``fft_dtype``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kernelconv.hu import HU_MIN
from kernelconv.kernel_response import (
    PROJECTION_NYQUIST_LPCM,
    REFERENCE_PIXEL_MM,
    KernelResponse,
    KernelTable,
    TransferTable,
    builtin_table,
    domain_sharpness,
)

SHARP_TO_SOFT_LAMBDA = 1e-4
SOFT_TO_SHARP_LAMBDA = 1e-3
PAD = 32  # pixels of reflection padding against wrap-around at the image border
#: at or below this a pixel is out-of-field padding, not an attenuation (air is -1000 HU)
PADDING_HU = -2000.0
#: the largest lambda the noise limit may reach (the filter is then nearly the identity)
MAX_LAMBDA = 1e4


class FilterEngine:
    """MTF-ratio filter between the kernels of the kernel response table."""

    def __init__(self, table: dict[str, KernelResponse] | KernelTable | None = None,
                 soft_to_sharp_lambda: float = SOFT_TO_SHARP_LAMBDA,
                 noise_limit: bool = True, table_label: str = "",
                 transfers: TransferTable | None = None, device: str = "cpu",
                 backend: str | None = None) -> None:
        if isinstance(table, KernelTable):
            self.kernels = table
            table_label = table_label or ("" if table.label == "built-in" else table.label)
        else:
            self.kernels = KernelTable(table or builtin_table(), transfers or {},
                                       table_label or "built-in")
        #: the kernel responses and fitted transfers this filter converts with (the HU check
        #: takes its expected noise ratio from the same object)
        self.kernel_table = self.kernels
        self.domains = tuple(self.table)
        self.domain_sharpness = domain_sharpness(self.domains, table=self.table)
        self.soft_to_sharp_lambda = soft_to_sharp_lambda
        self.noise_limit = noise_limit
        self._grids: dict[tuple[str, str, tuple[int, ...], float, float], np.ndarray] = {}
        #: how each slice of the last soft -> sharp call was limited (empty otherwise), and
        #: the most limited of them (None: not soft -> sharp)
        self.limits: list[dict[str, Any]] = []
        self.last_limit: dict[str, Any] | None = None
        version = "3-nl" if noise_limit else "1"
        #: the filter's algorithm and settings, without the table: changes when the filter does
        self.algorithm_id = f"mtf-ratio-filter-{version}-l{soft_to_sharp_lambda:g}"
        self.method_id = self.algorithm_id + (f"-{table_label}" if table_label else "")
        self.description = (f"classical MTF-ratio filter (Ohkubo et al. 2011), Wiener lambda "
                            f"{soft_to_sharp_lambda:g} for soft -> sharp"
                            + (", noise-limited per slice (extension)" if noise_limit else "")
                            + (f", kernel table {table_label}" if table_label else ""))
        #: where :meth:`convert` runs ("cpu", "cuda", "cuda:N"), and with what: numpy (the CPU
        #: by default) or torch (a CUDA device; on the CPU only when asked for, for tests and
        #: benchmarks). Both give the same results, so neither enters the method id.
        self.device = resolve_filter_device(device)
        if backend not in (None, "numpy", "torch"):
            raise ValueError(f"filter backend {backend!r}: expected numpy or torch")
        self.backend = backend or ("numpy" if self.device == "cpu" else "torch")
        if self.backend == "numpy" and self.device != "cpu":
            raise ValueError(f"the numpy filter runs on the CPU, not {self.device}")
        self._device_grids: dict[tuple[str, str, tuple[int, ...], float, float], Any] = {}
        #: the torch path's FFT precision (float64: the numpy path's results; float32 only to
        #: measure what it would change)
        self.fft_dtype = "float64"

    @property
    def table(self) -> dict[str, KernelResponse]:
        """The kernel responses (name -> response) of :attr:`kernels`."""
        return self.kernels.responses

    @property
    def transfers(self) -> TransferTable:
        """A site calibration's fitted transfers, used instead of the window ratio."""
        return self.kernels.transfers

    def add_kernel(self, response: KernelResponse) -> None:
        """Convert from (or to) one more kernel, e.g. a series' kernel estimated from its
        images (:mod:`kernelconv.fingerprint`); the table is copied, never changed in place."""
        self.kernels = dataclasses.replace(
            self.kernels, responses={**self.kernels.responses, response.name: response})
        self.kernel_table = self.kernels
        self.domains = tuple(self.table)
        self.domain_sharpness = domain_sharpness(self.domains, table=self.table)
        self._grids.clear()
        self._device_grids.clear()

    def describe(self, source: str, target: str) -> str:
        """The same filter in every direction."""
        return self.description

    def sharper(self, source: str, target: str) -> bool:
        return self.domain_sharpness[target] > self.domain_sharpness[source]

    def _window_ratio(self, source: str, target: str, f: np.ndarray) -> np.ndarray:
        return self.table[target].window(f) / np.maximum(self.table[source].window(f), 1e-6)

    def transfer(self, source: str, target: str, f_lpcm: np.ndarray,
                 lam: float | None = None) -> np.ndarray:
        fitted = self.transfers.get((source, target))
        if fitted is not None:  # a site's measured transfer: no assumption to regularise
            f = np.abs(np.asarray(f_lpcm, dtype=np.float64))
            h = np.interp(f, fitted[:, 0], fitted[:, 1])
            if source in self.table and target in self.table and \
                    not self.sharper(source, target):
                # beyond the fitted range (the calibration images' Nyquist frequency) sharp ->
                # soft continues along the windows' ratio from the last fitted value, rolling
                # off as the soft kernel does; soft -> sharp holds its last value (amplifying
                # further would add noise that no calibration image has shown)
                f_end = fitted[-1, 0]
                ratio = self._window_ratio(source, target, np.maximum(f, f_end))
                h = np.where(f > f_end, fitted[-1, 1] * ratio /
                             self._window_ratio(source, target, np.array([f_end]))[0], h)
            return h
        return regularised_ratio(self.table[source].window(f_lpcm),
                                 self.table[target].window(f_lpcm), f_lpcm,
                                 self.default_lambda(source, target) if lam is None else lam)

    def default_lambda(self, source: str, target: str) -> float:
        """The Wiener lambda of a kernel pair before any noise limit: tiny sharp -> soft, the
        configured one soft -> sharp."""
        return self.soft_to_sharp_lambda if self.sharper(source, target) else \
            SHARP_TO_SOFT_LAMBDA

    def grid_transfer(self, source: str, target: str, shape: tuple[int, ...],
                      pixel_mm: float, lam: float | None = None) -> np.ndarray:
        """H on the rfft2 grid of ``shape``; computed once per (kernels, size, spacing, lambda)."""
        key = (source, target, shape, pixel_mm, -1.0 if lam is None else lam)
        if key not in self._grids:
            if len(self._grids) > 64:
                self._grids.clear()
            self._grids[key] = self.transfer(source, target, frequency_grid(shape, pixel_mm),
                                             lam)[None]
        return self._grids[key]

    def limited_lambda(self, hu: np.ndarray, source: str, target: str,
                       pixel_mm: float) -> float:
        """The soft -> sharp lambda for these images: the configured one, raised until the
        predicted output noise is within the lowest plausible target noise (module docstring).
        Sets :attr:`last_limit`."""
        from kernelconv.noise import flat_tiles, freq2d, measure_noise

        lam0 = self.soft_to_sharp_lambda
        allowed = self.kernels.allowed_noise_ratio(source, target)
        if allowed is None:
            return lam0
        noise = measure_noise(hu, pixel_mm, flat_tiles(hu, pixel_mm))
        if noise is not None:
            f = freq2d(noise.n, pixel_mm)
            basis = "measured input NPS"

            def gain(lam: float) -> float:
                return noise.sd_after(self.transfer(source, target, f, lam)) / noise.sd
        else:  # FBP model: noise power at f ~ f W_source(f)^2 on the radial integral
            f1 = np.linspace(0.0, PROJECTION_NYQUIST_LPCM, 2048)
            base = f1 ** 2 * self.table[source].window(f1) ** 2
            basis = "FBP noise model (no flat tissue tiles)"

            def gain(lam: float) -> float:
                h = self.transfer(source, target, f1, lam)
                return float(np.sqrt(np.trapezoid(base * h * h, f1) / np.trapezoid(base, f1)))
        lam = lam0
        if gain(lam0) > allowed:
            lo, hi = np.log10(lam0), np.log10(MAX_LAMBDA)
            for _ in range(40):  # the gain falls monotonically with lambda
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if gain(10.0 ** mid) > allowed else (lo, mid)
            lam = float(10.0 ** hi)
        self.last_limit = {"lambda": lam, "allowed_noise_ratio": allowed,
                           "unlimited_noise_ratio": gain(lam0), "noise_ratio": gain(lam),
                           "input_noise_sd": None if noise is None else noise.sd,
                           "tiles": 0 if noise is None else noise.tiles, "basis": basis}
        return lam

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = REFERENCE_PIXEL_MM) -> np.ndarray:
        """(B, H, W) HU in ``source`` -> (B, H, W) HU in ``target``; pixel size in mm."""
        if source == target:
            return hu.astype(np.float32, copy=True)
        self.last_limit, self.limits = None, []
        limited = self.noise_limit and (source, target) not in self.transfers and \
            self.sharper(source, target)
        if self.backend == "torch":
            return self._convert_torch_device(hu, source, target, pixel_mm, limited)
        padding = hu <= PADDING_HU
        x = np.where(padding, HU_MIN, hu).astype(np.float64)
        b, h, w = x.shape
        pad = min(PAD, h - 1, w - 1)
        # one slice at a time when the noise limit measures the input: each slice's lambda
        # comes from its own noise, so the result does not depend on which slices share a
        # batch (--batch-size), and memory stays that of one slice
        groups = [slice(i, i + 1) for i in range(b)] if limited else [slice(0, b)]
        out = np.empty((b, h, w), dtype=np.float32)
        for g in groups:
            lam = self._slice_lambda(x[g], source, target, pixel_mm) if limited else None
            xp = np.pad(x[g], ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
            spec = np.fft.rfft2(xp) * self.grid_transfer(source, target, xp.shape[1:],
                                                         pixel_mm, lam)
            out[g] = np.fft.irfft2(spec, s=xp.shape[1:])[:, pad:pad + h, pad:pad + w]
        return np.where(padding, hu, out).astype(np.float32)

    def _slice_lambda(self, x: np.ndarray, source: str, target: str, pixel_mm: float) -> float:
        """The noise-limited lambda of one slice (1, H, W), padding already filled; records the
        slice's limit in :attr:`limits` and the most limited so far in :attr:`last_limit`."""
        self.last_limit = None
        lam = self.limited_lambda(x, source, target, pixel_mm)
        if self.last_limit is not None:
            self.limits.append(self.last_limit)
        self.last_limit = max(self.limits, key=lambda d: d["lambda"], default=None)
        return lam

    def _device_grid(self, source: str, target: str, shape: tuple[int, ...], pixel_mm: float,
                     lam: float | None) -> Any:
        """:meth:`grid_transfer` as a float64 tensor on :attr:`device`, kept there."""
        import torch

        key = (source, target, shape, pixel_mm, -1.0 if lam is None else lam)
        if key not in self._device_grids:
            if len(self._device_grids) > 64:
                self._device_grids.clear()
            self._device_grids[key] = torch.from_numpy(
                self.grid_transfer(source, target, shape, pixel_mm, lam)).to(self.device)
        return self._device_grids[key]

    def _convert_torch_device(self, hu: np.ndarray, source: str, target: str,
                              pixel_mm: float, limited: bool) -> np.ndarray:
        """:meth:`convert` with torch on :attr:`device`: the same padding fill, reflection
        padding, transfer and crop, in :attr:`fft_dtype`, the whole batch in one FFT pair. With the noise
        limit each slice gets its own lambda, measured on the host as the numpy path does
        (so a slice's result still does not depend on its batch)."""
        import torch

        b, h, w = hu.shape
        pad = min(PAD, h - 1, w - 1)
        shape = (h + 2 * pad, w + 2 * pad)
        lams: list[float | None] = [None]
        if limited:
            host = np.where(hu <= PADDING_HU, HU_MIN, hu).astype(np.float64)
            lams = [self._slice_lambda(host[i:i + 1], source, target, pixel_mm)
                    for i in range(b)]
        dtype = getattr(torch, self.fft_dtype)
        grid = torch.cat([self._device_grid(source, target, shape, pixel_mm, lam)
                          for lam in lams])[:, None].to(dtype)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(hu)).to(self.device)
            padding = x <= PADDING_HU
            xf = x.to(dtype).masked_fill(padding, HU_MIN)[:, None]
            xp = torch.nn.functional.pad(xf, (pad, pad, pad, pad), mode="reflect")
            y = fft_filter(xp, grid, pad, h, w)[:, 0].float()
            out = torch.where(padding, x.float(), y)
            return out.cpu().numpy()

    def convert_torch(self, x: Any, sources: list[str], targets: list[str],
                      pixel_mm: list[float], windows: WindowFn | None = None,
                      zero: float = 0.0) -> Any:
        """The same conversion on a torch tensor (B, 1, H, W), differentiable (training).

        Works on HU or on the network's [-1, 1] scale alike: ``zero`` is the value of 0 HU on
        the input's scale (0 for HU; ``hu_to_unit(0)`` on the network's scale), taken off
        before filtering and put back after, so the filter acts on values proportional to HU
        as :meth:`convert` does; that matters where H(0) is not exactly 1 (a site
        calibration's fitted transfer holds the true target's low-pass shift, H(0) ~ 0.997 on
        the real Siemens pair: ~2.7 HU on the unit scale otherwise). Item i goes from
        ``sources[i]`` to ``targets[i]`` at ``pixel_mm[i]``; padding and transfer are exactly
        those of :meth:`convert` (without the noise limit). With ``windows`` (a kernel name
        and a torch tensor of frequencies in lp/cm -> that kernel's window there, e.g. windows
        being learnt) the transfer is built from those windows with the same Wiener formula
        and lambdas, and is differentiable in them.
        """
        import torch

        b, _, h, w = x.shape
        pad = min(PAD, h - 1, w - 1)
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
        out = torch.empty_like(x)
        groups: dict[tuple[str, str, float], list[int]] = {}
        for i in range(b):
            groups.setdefault((sources[i], targets[i], float(pixel_mm[i])), []).append(i)
        shape = tuple(xp.shape[-2:])
        for (src, dst, px), ids in groups.items():
            sel = xp[ids]
            if src == dst:
                out[ids] = sel[..., pad:pad + h, pad:pad + w]
                continue
            sel = sel - zero
            if windows is None:
                grid = torch.from_numpy(self.grid_transfer(src, dst, shape, px)).to(x.device)
            else:
                f = torch.from_numpy(frequency_grid(shape, px)).to(x.device)
                grid = regularised_ratio(windows(src, f), windows(dst, f), f,
                                         self.default_lambda(src, dst))[None].double()
            out[ids] = (fft_filter(sel.double(), grid, pad, h, w) + zero).to(x.dtype)
        return out


#: (kernel name, frequencies in lp/cm as a torch tensor) -> the kernel's window there
WindowFn = Callable[[str, Any], Any]


def fft_filter(xp: Any, grid: Any, pad: int, h: int, w: int) -> Any:
    """A reflection-padded torch batch (..., h + 2 pad, w + 2 pad) times the transfer on its
    rfft2 grid, cropped back to (..., h, w)."""
    import torch

    shape = tuple(xp.shape[-2:])
    spec = torch.fft.rfft2(xp) * grid
    return torch.fft.irfft2(spec, s=shape)[..., pad:pad + h, pad:pad + w]


def resolve_filter_device(spec: str) -> str:
    """The filter's device from ``--device``: ``cpu`` (and ``auto`` without a GPU) is the
    CPU without importing torch; ``auto`` with a GPU, ``cuda`` and ``cuda:N`` are resolved as
    the model's device is (an unusable one is a usage error)."""
    name = spec.strip().lower()
    if name == "cpu" or (name == "auto" and not _gpu_driver_present()):
        return "cpu"
    from kernelconv.engines.torch_engine import resolve_device

    return str(resolve_device(name))


def _gpu_driver_present() -> bool:
    """Whether an NVIDIA driver is visible (cheap; torch is asked only then, or when it is
    already loaded)."""
    return "torch" in sys.modules or Path("/dev/nvidiactl").exists() or \
        Path("/proc/driver/nvidia").exists()


def regularised_ratio(w_source: Any, w_target: Any, f_lpcm: Any, lam: float) -> Any:
    """The filter's transfer from the two windows (numpy arrays or torch tensors alike):
    W_t W_s / (W_s^2 + lambda (f / 10 lp/cm)^2), so H(0) = 1 and the regularisation grows
    with frequency as the noise-to-signal ratio does."""
    return w_target * w_source / (w_source * w_source + lam * (f_lpcm / 10.0) ** 2)


def frequency_grid(shape: tuple[int, ...], pixel_mm: float) -> np.ndarray:
    """Radial spatial frequency (lp/cm) on the rfft2 grid of an image of ``shape``."""
    fy = np.fft.fftfreq(shape[0], d=pixel_mm)
    fx = np.fft.rfftfreq(shape[1], d=pixel_mm)
    return np.hypot(fy[:, None], fx[None, :]) * 10.0
