"""A parallel-beam CT scanner: forward projection, noise, FBP per kernel.

Why parallel beam: for parallel-beam FBP two reconstructions of the same raw data with kernels
A and B differ exactly by the radial filter W_A/W_B, which is the relation the kernel
specification and the classical MTF-ratio baseline are built on; a fan-beam geometry adds
position-dependent magnification and noise (second-order effects for kernel conversion) at several
times the cost. The sampling follows the shared notes' Siemens Definition-class geometry at the
isocentre: channel pitch 0.705 mm, sampled at half of it (0.3525 mm: the quarter-detector offset
of a full rotation), 1152 views per rotation = 576 parallel views over 180 degrees, a detector
aperture of 0.6 mm and a focal spot blur of 0.32 mm FWHM at the isocentre.

How: projections and backprojections are computed in the Fourier domain with non-uniform FFTs
(FINUFFT, tolerance 1e-6): by the Fourier-slice theorem, the 1-D spectrum of a projection at angle
theta is the object's 2-D spectrum on the line at theta. The object is a piecewise-constant
image on a fine grid (default 2x finer than the 512 x 512 output: no inverse crime), so its
spectrum carries the pixel's box response. Detector aperture (box) and focal spot (Gaussian)
multiply the projection spectra. Noise: Poisson counts on the transmitted intensity I0*exp(-p)
plus Gaussian electronic noise, then -log; one realisation per slice, shared by every kernel.
FBP: ramp |f| times each kernel's window W(f) on 2x zero-padded projections, backprojected by the
adjoint NUFFT onto the output pixel centres (point sampling, so sharp kernels alias as on a real
scanner). Monochromatic: no beam hardening or scatter.
"""

from __future__ import annotations

from dataclasses import dataclass

import finufft
import numpy as np

from kernelconv.kernel_response import KernelResponse

#: linear attenuation of water at the effective energy of a 120 kVp beam (~70 keV), 1/mm
MU_WATER = 0.0193


@dataclass(frozen=True)
class Geometry:
    """Sampling of the simulated scanner and its output grid (mm)."""

    fov: float = 350.0
    size: int = 512  # output matrix
    oversample: int = 2  # phantom grid is this many times finer
    n_views: int = 576  # over 180 degrees
    det_spacing: float = 0.3525
    n_det: int = 1024  # covers 361 mm
    aperture: float = 0.6
    focal_fwhm: float = 0.32

    @property
    def pixel(self) -> float:
        return self.fov / self.size

    #: fine (object) grid size; None: just the output field of view at ``oversample``. Larger
    #: when the patient extends beyond a small field of view (the raw data still hold all of it)
    object_size: int | None = None

    @property
    def fine_size(self) -> int:
        return self.object_size or self.size * self.oversample

    @property
    def fine_pixel(self) -> float:
        return self.pixel / self.oversample

    @property
    def crop(self) -> slice:
        """The output field of view within the fine grid (rows and columns alike)."""
        start = (self.fine_size - self.size * self.oversample) // 2
        return slice(start, start + self.size * self.oversample)

    @classmethod
    def for_fov(cls, fov: float, object_mm: float, size: int = 512,
                oversample: int = 2) -> Geometry:
        """A scanner reconstructing ``fov`` mm on ``size`` pixels, with an object grid and a
        detector that cover ``object_mm`` (at least the field of view)."""
        base = cls(fov=fov, size=size, oversample=oversample)
        extent = max(object_mm, fov)
        fine = size * oversample
        extra = int(np.ceil((extent / base.fine_pixel - fine) / 2.0)) if extent > fov else 0
        n_det = max(base.n_det, 2 * int(np.ceil(extent * 1.02 / base.det_spacing / 2.0)))
        return cls(fov=fov, size=size, oversample=oversample, n_det=n_det,
                   object_size=fine + 2 * extra if extra > 0 else None)

    def angles(self) -> np.ndarray:
        return np.arange(self.n_views) * (np.pi / self.n_views)


def hu_to_mu(hu: np.ndarray) -> np.ndarray:
    return (MU_WATER * (1.0 + hu / 1000.0)).clip(min=0.0)


def mu_to_hu(mu: np.ndarray) -> np.ndarray:
    return 1000.0 * (mu - MU_WATER) / MU_WATER


def _freq_lines(geo: Geometry, n: int, spacing: float) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """Frequencies (cycles/mm) of n-point DFTs of projections, along every view: (k, kx, ky)."""
    k = np.fft.fftfreq(n, d=spacing)
    th = geo.angles()
    return k, np.outer(np.cos(th), k), np.outer(np.sin(th), k)


def project(mu: np.ndarray, geo: Geometry, threads: int = 1) -> np.ndarray:
    """Line integrals (dimensionless) of mu (1/mm) on the fine grid: (n_views, n_det).

    ``mu[i, j]`` is the pixel at y = (i - N/2 + 0.5) * d, x = (j - N/2 + 0.5) * d; the detector
    sample m lies at t = (m - n_det/2) * det_spacing with t = x cos(theta) + y sin(theta).
    """
    d = geo.fine_pixel
    k, kx, ky = _freq_lines(geo, geo.n_det, geo.det_spacing)
    # FINUFFT type 2: c_j = sum_{m} f[m] exp(i (m1 x_j + m2 y_j)), modes m centred at 0,
    # first array axis paired with the first coordinate. Pixel centre offset 0.5 handled below.
    xs = (-2.0 * np.pi * d) * ky.ravel()  # axis 0 = y
    ys = (-2.0 * np.pi * d) * kx.ravel()  # axis 1 = x
    spec = finufft.nufft2d2(xs, ys, mu.astype(np.complex128), eps=1e-6, isign=1,
                           nthreads=threads)
    spec = spec.reshape(kx.shape)
    # modes run -N/2..N/2-1 around index N/2, i.e. pixel centres are offset by +0.5 pixel
    spec *= np.exp(-2j * np.pi * (kx + ky) * (0.5 * d)) * d * d
    spec *= np.sinc(kx * d) * np.sinc(ky * d)  # piecewise-constant pixels
    spec *= np.sinc(k * geo.aperture)[None, :]  # detector aperture (box)
    sigma = geo.focal_fwhm / 2.3548
    spec *= np.exp(-2.0 * (np.pi * k * sigma) ** 2)[None, :]  # focal spot (Gaussian)
    # detector samples at t_m = (m - n/2) * spacing: shift the DFT origin to the centre
    t0 = -(geo.n_det // 2) * geo.det_spacing
    spec *= np.exp(2j * np.pi * k * t0)[None, :]
    proj = np.fft.ifft(spec, axis=1).real / geo.det_spacing
    return proj


def add_noise(
    proj: np.ndarray, i0: float, electronic_sd: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson counts on I0*exp(-p) plus Gaussian electronic noise, back to line integrals."""
    expected = i0 * np.exp(-proj)
    counts = rng.poisson(expected).astype(np.float64)
    counts += rng.normal(0.0, electronic_sd, size=counts.shape)
    return -np.log(np.clip(counts, 0.5, None) / i0)


def ramp_filter(n: int, spacing: float) -> np.ndarray:
    """The ramp |k| (1/mm) as the DFT of the band-limited spatial ramp kernel (Kak & Slaney).

    Sampling |k| directly leaves a DC error (a constant offset in the image); building the
    kernel in space, h(0) = 1/(4 s^2), h(odd n) = -1/(pi n s)^2, avoids it.
    """
    idx = np.arange(n)
    idx = np.where(idx > n // 2, idx - n, idx)
    h = np.zeros(n)
    h[0] = 1.0 / (4.0 * spacing * spacing)
    odd = idx % 2 == 1
    h[odd] = -1.0 / (np.pi * idx[odd] * spacing) ** 2
    return np.fft.fft(h).real * spacing


def fbp(proj: np.ndarray, geo: Geometry, kernels: list[KernelResponse],
        threads: int = 1) -> np.ndarray:
    """Filtered backprojection, once per kernel: (len(kernels), size, size) in HU."""
    n_pad = 2 * geo.n_det
    padded = np.zeros((proj.shape[0], n_pad))
    padded[:, : geo.n_det] = proj
    spec = np.fft.fft(padded, axis=1)
    k, kx, ky = _freq_lines(geo, n_pad, geo.det_spacing)
    # detector sample m (padded index) sits at t = (m - n_det/2) * spacing
    spec *= np.exp(-2j * np.pi * k * (-(geo.n_det // 2) * geo.det_spacing))[None, :]
    ramp = ramp_filter(n_pad, geo.det_spacing)
    dk = 1.0 / (n_pad * geo.det_spacing)
    dtheta = np.pi / geo.n_views
    px = geo.pixel
    # FINUFFT type 1: f[m] = sum_j c_j exp(i (m1 x_j + m2 y_j)); output pixel centres at
    # (m - size/2 + 0.5) * px
    xs = (2.0 * np.pi * px) * ky.ravel()
    ys = (2.0 * np.pi * px) * kx.ravel()
    shift = np.exp(2j * np.pi * (kx + ky) * (0.5 * px)).ravel()
    images = []
    for kern in kernels:
        w = kern.window(np.abs(k) * 10.0)  # cycles/mm -> lp/cm
        c = (spec * (ramp * w * geo.det_spacing)[None, :]).ravel() * shift * (dk * dtheta)
        mu = finufft.nufft2d1(xs, ys, c.astype(np.complex128), (geo.size, geo.size), eps=1e-6,
                              isign=1, nthreads=threads).real
        images.append(mu_to_hu(mu))
    return np.stack(images).astype(np.float32)
