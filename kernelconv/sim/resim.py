"""Re-simulation of real CT: real anatomy, paired in every kernel of the table (an extension).

A real series holds one kernel, with that kernel's noise and blur. ``resimulate`` turns each
real slice into a simulation object and scans it like the procedural phantoms:

1. **HU**: the stored values in HU; below -1000 (air, and the padding value outside the
   reconstruction circle, e.g. -2000 or -3024) becomes air, -1000 HU; outside the
   reconstruction circle is air too (the raw data never held it).
2. **Denoise**: non-local means (scikit-image ``denoise_nl_means``, 5 x 5 patches searched
   over 13 x 13, filtering strength 0.8 x the slice's noise SD, estimated robustly from
   Immerkaer's 3 x 3 Laplacian-difference mask: 1.4826 x the median of its absolute response
   / 6, which edges barely move). This removes the source kernel's noise texture but not its blur: the object
   is as sharp as the source kernel, so prefer sharp sources; re-simulated sharp kernels of a
   soft source show less anatomical detail than a real sharp reconstruction would.
3. **Fine grid**: upsampled 2x (cubic) to half the source's own pixel size, so the object
   is defined on a grid finer than the output (no inverse crime) and the output keeps the
   source's field of view and matrix.
4. **Scan**: parallel-beam projection with detector aperture and focal spot, Poisson and
   electronic noise (one realisation per slice, shared by all kernels), FBP with every kernel
   (:mod:`kernelconv.sim.scanner`), written as one series per kernel in a new study, with
   the denoised object as truth.npz.

The source series is read only; each becomes OUT/resim-NNN/ with the layout of `simulate`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from kernelconv.dicom.dataset import pixel_spacing_mm, read_hu_slices
from kernelconv.dicom.discovery import Series, discover
from kernelconv.errors import InputError
from kernelconv.kernel_response import KernelResponse
from kernelconv.sim.phantom import Slice
from kernelconv.sim.scanner import Geometry
from kernelconv.sim.series import (
    SimulationConfig,
    acquire,
    draw_variation,
    install_patient,
    patient_seed,
    write_simulation_json,
)

#: non-local-means filtering strength relative to the measured noise SD
NLM_STRENGTH = 0.8


def noise_sd(image: np.ndarray) -> float:
    """Robust noise SD of an image (Immerkaer's mask, median of the absolute response)."""
    x = image.astype(np.float64)
    r = (x[:-2, :-2] + x[:-2, 2:] + x[2:, :-2] + x[2:, 2:]
         - 2.0 * (x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:]) + 4.0 * x[1:-1, 1:-1])
    return float(1.4826 * np.median(np.abs(r)) / 6.0)


def denoise(hu: np.ndarray) -> np.ndarray:
    """Non-local means in HU (step 2 of the module docstring)."""
    from skimage.restoration import denoise_nl_means

    scale = 1000.0  # skimage works best on values of order 1
    x = hu.astype(np.float64) / scale
    body = x > -0.5
    sigma = noise_sd(np.where(body, x, np.median(x[body]) if body.any() else 0.0))
    if sigma <= 0:
        return hu.astype(np.float32)
    out = denoise_nl_means(x, patch_size=5, patch_distance=6, h=NLM_STRENGTH * sigma,
                           sigma=sigma, fast_mode=True)
    return (out * scale).astype(np.float32)


def to_object(hu: np.ndarray, oversample: int = 2) -> np.ndarray:
    """A real slice (HU) -> the simulation object on the fine grid (steps 1-3)."""
    from scipy import ndimage

    n = hu.shape[0]
    c = np.arange(n) - n / 2 + 0.5
    outside = c[None, :] ** 2 + c[:, None] ** 2 > (n / 2) ** 2
    x = np.where(outside, -1000.0, np.maximum(hu, -1000.0)).astype(np.float32)
    x = denoise(x)
    fine = ndimage.zoom(x, oversample, order=3, mode="nearest", grid_mode=True)
    return np.clip(fine, -1000.0, 3071.0).astype(np.float32)


def series_slices(series: Series, max_slices: int | None) -> tuple[list[np.ndarray], float,
                                                                    list[float]]:
    """The HU slices of a series (the middle ``max_slices`` of them), spacing, positions."""
    if series.error or series.multiframe:
        raise InputError(f"{series.label()}: cannot re-simulate "
                         f"({series.error or 'multi-frame'})")
    refs = series.slices
    if max_slices and len(refs) > max_slices:
        start = (len(refs) - max_slices) // 2
        refs = refs[start:start + max_slices]
    images, first = read_hu_slices([r.path for r in refs])
    if any(im.shape[0] != im.shape[1] for im in images) or len({im.shape for im in images}) > 1:
        raise InputError(f"{series.label()}: re-simulation needs square slices of one size")
    pixel = pixel_spacing_mm(first)
    if pixel is None:
        raise InputError(f"{series.label()}: no PixelSpacing")
    z = [float(r.position or 0.0) for r in refs]
    return images, pixel, [p - z[len(z) // 2] for p in z]


def resimulate(out: Path, source: Path, config: SimulationConfig,
               table: dict[str, KernelResponse],
               on_slice: Callable[[int], None] = lambda n: None,
               on_series: Callable[[int, str], None] = lambda i, status: None) -> list[Path]:
    """Re-simulate every CT series under ``source`` into OUT/resim-NNN/ (all kernels)."""
    if not source.exists():
        raise InputError(f"{source}: no such file or directory")
    found = discover(source, exclude=[out])
    usable = [s for s in found.series if not s.error and not s.multiframe]
    if not usable:
        raise InputError(f"{source}: no single-frame CT series to re-simulate")
    kernels = [table[k] for k in config.kernels]
    write_simulation_json(out, config, kernels, source=str(source),
                          resimulation={"denoise": f"non-local means, h = {NLM_STRENGTH} x "
                                        "estimated noise SD", "object": "2x cubic upsampling"})
    folders = []
    for index, series in enumerate(usable):
        name = f"resim-{index:03d}"
        folders.append(out / name)

        def write(folder: Path, index: int = index, series: Series = series,
                  name: str = name) -> None:
            images, pixel, zs = series_slices(series, config.slices)
            pseed = patient_seed(config.seed, 10_000 + index)
            var = draw_variation(config, pseed, kernels)
            n = images[0].shape[0]
            geo = Geometry.for_fov(pixel * n, pixel * n, size=n, oversample=config.oversample)

            def slices() -> Iterator[tuple[float, Slice]]:
                for z, hu in zip(zs, images, strict=True):
                    obj = to_object(hu, config.oversample)
                    yield z, Slice(obj, np.zeros(obj.shape, bool))

            # the real series' field of view and spacing, whatever the randomisation drew
            var = replace(var, fov=geo.fov, body_scale=1.0, table=False)
            acquire(folder, name, ("kernelconv resim", config.seed, series.series_uid), geo,
                    var.kernels(kernels), slices(), config, var, pseed,
                    "Re-simulated real CT", on_slice, dose=config.dose,
                    body_part="", patient_id=f"RESIM-{config.seed}-{index:03d}",
                    series_prefix="Resim")
            (folder / "source.json").write_text(json.dumps({
                "source_series_uid": series.series_uid, "source_kernel": series.kernel,
                "slices": len(images), "pixel_mm": pixel}, indent=2) + "\n")

        status = install_patient(out, name, write)
        on_series(index, status)
    return folders
