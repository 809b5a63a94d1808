"""The radial power spectrum of images, as the spectral extensions read it (no I/O).

A reconstruction kernel is a radial filter of the image, so a kernel's signature is the
image's radial power spectrum: a filter H multiplies the power in every ring by |H|^2, and
moves its log by 2 log10 |H|. :func:`log_ring_power` is what the discriminator's spectral head
(``d_spectral_head``) and the generator's spectral feature matching (``lambda_spectral``,
kernelconv/training/losses.py) both read: per image, the mean is removed, a Hann window
applied (so the crop's borders do not spread anatomy's power over every frequency), and the
power of the rfft2 (per pixel: a white noise of variance s^2 reads s^2 everywhere) averaged in
rings; log10(P + 1e-8), 1e-8 being about the 1 HU rounding of stored values on the network's
[-1, 1] scale. Rings are either in cycles/pixel (N_RINGS of RING_WIDTH, to the grid's corner:
what the discriminator reads, which is not told the pixel size) or, given each image's pixel
spacing, in physical frequency (N_LPCM_RINGS of LPCM_RING_WIDTH lp/cm: what the feature
matching compares, so that slices of different pixel sizes are compared at the same
frequencies, as kernels are defined; a ring beyond an image's corner frequency is NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: ring width in cycles per pixel (64 rings to the Nyquist frequency)
RING_WIDTH = 1.0 / 64.0
#: rings from 0 to the corner of the frequency grid (sqrt(2) x Nyquist)
N_RINGS = int(math.ceil(math.sqrt(0.5) / RING_WIDTH))
#: physical rings (lp/cm) for images of known pixel spacing, up to 15 lp/cm (0.33 mm pixels)
LPCM_RING_WIDTH = 0.25
N_LPCM_RINGS = 60
FLOOR = 1e-8

_CACHE: dict[tuple[int, int, str, float], tuple[torch.Tensor, torch.Tensor]] = {}


def rings(h: int, w: int, device: torch.device, pixel_mm: float = 0.0
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Hann window (h, w) of unit power gain, ring-averaging matrix (rings, h*(w//2+1))):
    N_RINGS rings in cycles/pixel, or with ``pixel_mm`` N_LPCM_RINGS rings in lp/cm (a ring
    with no frequency of this grid has an all-NaN row)."""
    key = (h, w, str(device), float(pixel_mm))
    if key not in _CACHE:
        if len(_CACHE) > 32:
            _CACHE.clear()
        hann = (torch.hann_window(h, periodic=False, dtype=torch.float64)[:, None]
                * torch.hann_window(w, periodic=False, dtype=torch.float64)[None, :])
        fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        r = torch.sqrt(fy ** 2 + fx ** 2).flatten()
        if pixel_mm:
            n, ring = N_LPCM_RINGS, torch.floor(r * 10.0 / pixel_mm / LPCM_RING_WIDTH).long()
        else:
            n, ring = N_RINGS, torch.floor(r / RING_WIDTH).long()
        keep = (ring < n) & (r > 0)
        m = torch.zeros(n, r.numel(), dtype=torch.float64)
        m[ring[keep], torch.nonzero(keep)[:, 0]] = 1.0
        count = m.sum(dim=1, keepdim=True)
        m = torch.where(count > 0, m / count.clamp(min=1.0), torch.nan)
        hann = hann / hann.square().mean().sqrt()
        _CACHE[key] = (hann.float().to(device), m.float().to(device))
    return _CACHE[key]


def log_ring_power(x: torch.Tensor, pixel_mm: Sequence[float] | None = None) -> torch.Tensor:
    """(B, rings) log10 ring power of (B, 1, H, W) images (differentiable): N_RINGS rings in
    cycles/pixel, or, with every image's pixel spacing, N_LPCM_RINGS rings in lp/cm (NaN where
    a ring lies beyond the image's corner frequency)."""
    h, w = x.shape[-2], x.shape[-1]
    img = x[:, 0].float()
    y = (img - img.mean(dim=(1, 2), keepdim=True)) * rings(h, w, x.device)[0]
    power = (torch.fft.rfft2(y).abs().square() / (h * w)).flatten(1)
    if pixel_mm is None:
        return torch.log10(power @ rings(h, w, x.device)[1].T + FLOOR)
    out = torch.empty(len(x), N_LPCM_RINGS, device=x.device, dtype=power.dtype)
    for px in sorted({float(p) for p in pixel_mm}):
        ids = [i for i, p in enumerate(pixel_mm) if float(p) == px]
        m = rings(h, w, x.device, px)[1]
        valid = ~torch.isnan(m[:, 0:1]).expand(-1, len(ids)).T
        ring_power = power[ids] @ torch.nan_to_num(m).T
        out[ids] = torch.where(valid, torch.log10(ring_power + FLOOR), torch.nan)
    return out


def ring_centres() -> torch.Tensor:
    """Centre frequency of each ring, cycles/pixel."""
    return (torch.arange(N_RINGS, dtype=torch.float64) + 0.5) * RING_WIDTH
