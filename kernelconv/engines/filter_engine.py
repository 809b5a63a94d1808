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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelconv.kernel_response import (
    REFERENCE_PIXEL_MM,
    KernelResponse,
    domain_sharpness,
    load_response_table,
)

SHARP_TO_SOFT_LAMBDA = 1e-4
SOFT_TO_SHARP_LAMBDA = 1e-3
PAD = 32  # pixels of reflection padding against wrap-around at the image border


class FilterEngine:
    """MTF-ratio filter between the kernels of the kernel response table."""

    def __init__(self, table: dict[str, KernelResponse] | None = None,
                 soft_to_sharp_lambda: float = SOFT_TO_SHARP_LAMBDA) -> None:
        self.table = table or load_response_table()
        self.domains = tuple(self.table)
        self.domain_sharpness = domain_sharpness(self.domains, table=self.table)
        self.soft_to_sharp_lambda = soft_to_sharp_lambda
        self._grids: dict[tuple[str, str, tuple[int, ...], float], np.ndarray] = {}
        self.method_id = f"mtf-ratio-filter-1-l{soft_to_sharp_lambda:g}"
        self.description = (f"classical MTF-ratio filter (Ohkubo et al. 2011), Wiener lambda "
                            f"{soft_to_sharp_lambda:g} for soft -> sharp")

    def transfer(self, source: str, target: str, f_lpcm: np.ndarray) -> np.ndarray:
        ws = self.table[source].window(f_lpcm)
        wt = self.table[target].window(f_lpcm)
        sharper = self.domain_sharpness[target] > self.domain_sharpness[source]
        lam = self.soft_to_sharp_lambda if sharper else SHARP_TO_SOFT_LAMBDA
        return wt * ws / (ws * ws + lam * (f_lpcm / 10.0) ** 2)

    def grid_transfer(self, source: str, target: str, shape: tuple[int, ...],
                      pixel_mm: float) -> np.ndarray:
        """H on the rfft2 grid of ``shape``; computed once per (kernels, size, spacing)."""
        key = (source, target, shape, pixel_mm)
        if key not in self._grids:
            fy = np.fft.fftfreq(shape[0], d=pixel_mm)
            fx = np.fft.rfftfreq(shape[1], d=pixel_mm)
            f = np.hypot(fy[:, None], fx[None, :]) * 10.0  # lp/cm
            self._grids[key] = self.transfer(source, target, f)[None]
        return self._grids[key]

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = REFERENCE_PIXEL_MM) -> np.ndarray:
        """(B, H, W) HU in ``source`` -> (B, H, W) HU in ``target``; pixel size in mm."""
        if source == target:
            return hu.astype(np.float32, copy=True)
        b, h, w = hu.shape
        pad = min(PAD, h - 1, w - 1)
        x = np.pad(hu.astype(np.float64), ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
        spec = np.fft.rfft2(x) * self.grid_transfer(source, target, x.shape[1:], pixel_mm)
        y = np.fft.irfft2(spec, s=x.shape[1:])[:, pad:pad + h, pad:pad + w]
        return y.astype(np.float32)

    def convert_torch(self, x: Any, sources: list[str], targets: list[str],
                      pixel_mm: list[float]) -> Any:
        """The same conversion on a torch tensor (B, 1, H, W), differentiable (training).

        Works on HU or on the network's [-1, 1] scale alike: the filter is linear with
        H(0) = 1, so it commutes with the affine HU <-> unit map. Item i goes from
        ``sources[i]`` to ``targets[i]`` at ``pixel_mm[i]``; padding and transfer are exactly
        those of :meth:`convert`.
        """
        import torch

        b, _, h, w = x.shape
        pad = min(PAD, h - 1, w - 1)
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
        out = torch.empty_like(x)
        groups: dict[tuple[str, str, float], list[int]] = {}
        for i in range(b):
            groups.setdefault((sources[i], targets[i], float(pixel_mm[i])), []).append(i)
        for (src, dst, px), ids in groups.items():
            sel = xp[ids]
            if src == dst:
                out[ids] = sel[..., pad:pad + h, pad:pad + w]
                continue
            grid = torch.from_numpy(self.grid_transfer(src, dst, tuple(xp.shape[-2:]), px))
            spec = torch.fft.rfft2(sel.double()) * grid.to(x.device)
            y = torch.fft.irfft2(spec, s=tuple(xp.shape[-2:]))[..., pad:pad + h, pad:pad + w]
            out[ids] = y.to(x.dtype)
        return out
