"""The radial power spectrum of images, as the spectral extensions read it (no I/O).

A reconstruction kernel is a radial filter of the image, so a kernel's signature is the
image's radial power spectrum: a filter H multiplies the power in every ring by |H|^2, and
moves its log by 2 log10 |H|. :func:`log_ring_power` is what the discriminator's spectral head
(``d_spectral_head``) and the generator's spectral feature matching (``lambda_spectral``,
kernelconv/training/losses.py) both read: per image, the mean is removed, a Hann window
applied (so the crop's borders do not spread anatomy's power over every frequency), and the
power of the rfft2 (per pixel: a white noise of variance s^2 reads s^2 everywhere) averaged in
N_RINGS rings of width RING_WIDTH cycles/pixel from 0 to the grid's corner; log10(P + 1e-8),
1e-8 being about the 1 HU rounding of stored values on the network's [-1, 1] scale.
"""

from __future__ import annotations

import math

import torch

#: ring width in cycles per pixel (64 rings to the Nyquist frequency)
RING_WIDTH = 1.0 / 64.0
#: rings from 0 to the corner of the frequency grid (sqrt(2) x Nyquist)
N_RINGS = int(math.ceil(math.sqrt(0.5) / RING_WIDTH))
FLOOR = 1e-8

_CACHE: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def rings(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(Hann window (h, w) of unit power gain, ring-averaging matrix (N_RINGS, h*(w//2+1)))."""
    key = (h, w, str(device))
    if key not in _CACHE:
        if len(_CACHE) > 32:
            _CACHE.clear()
        hann = (torch.hann_window(h, periodic=False, dtype=torch.float64)[:, None]
                * torch.hann_window(w, periodic=False, dtype=torch.float64)[None, :])
        fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        r = torch.sqrt(fy ** 2 + fx ** 2).flatten()
        ring = torch.floor(r / RING_WIDTH).long()
        keep = (ring < N_RINGS) & (r > 0)
        m = torch.zeros(N_RINGS, r.numel(), dtype=torch.float64)
        m[ring[keep], torch.nonzero(keep)[:, 0]] = 1.0
        m = m / m.sum(dim=1, keepdim=True).clamp(min=1.0)
        hann = hann / hann.square().mean().sqrt()
        _CACHE[key] = (hann.float().to(device), m.float().to(device))
    return _CACHE[key]


def log_ring_power(x: torch.Tensor) -> torch.Tensor:
    """(B, N_RINGS) log10 ring power of (B, 1, H, W) images (differentiable)."""
    hann, m = rings(x.shape[-2], x.shape[-1], x.device)
    img = x[:, 0].float()
    y = (img - img.mean(dim=(1, 2), keepdim=True)) * hann
    power = torch.fft.rfft2(y).abs().square() / (x.shape[-2] * x.shape[-1])
    return torch.log10(power.flatten(1) @ m.T + FLOOR)


def ring_centres() -> torch.Tensor:
    """Centre frequency of each ring, cycles/pixel."""
    return (torch.arange(N_RINGS, dtype=torch.float64) + 0.5) * RING_WIDTH
