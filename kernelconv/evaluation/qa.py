"""`kernelconv qa`: MTF and noise of simulated QA-phantom series, checked against the spec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernelconv.dicom.dataset import read_hu_slices
from kernelconv.dicom.discovery import discover
from kernelconv.errors import InputError
from kernelconv.evaluation.mtf import MtfResult, circular_edge_mtf, roi_noise_sd
from kernelconv.kernel_response import KernelResponse
from kernelconv.sim.phantom import (
    QA_ROD_CENTRE,
    QA_ROD_HU,
    QA_ROD_RADIUS,
    QA_UNIFORM_CENTRE,
    QA_UNIFORM_RADIUS,
)

#: fewer slices than this give MTF figures whose run-to-run spread is comparable to the spec's
#: tolerance; set from the measurement of benchmarks/qa_stability.py (docs/simulation.md)
MIN_STABLE_SLICES = 16


@dataclass
class QaResult:
    kernel: str
    folder: str
    slices: int
    mtf: MtfResult
    noise_sd: float
    noise_ratio: float | None = None  # relative to the reference kernel (B30f)
    #: |difference| of MTF50 and MTF10 measured on the first and the second half of the slices
    split_half: dict[str, float] | None = None

    @property
    def stable(self) -> bool:
        """Enough slices for a figure that repeats within the spec's tolerance (measured:
        benchmarks/qa_stability.py, docs/simulation.md)."""
        return self.slices >= MIN_STABLE_SLICES

    def checks(self, spec: KernelResponse | None) -> dict[str, bool]:
        """Which spec targets this measurement meets (empty if the kernel has no spec)."""
        if spec is None:
            return {}
        out: dict[str, bool] = {}
        if spec.mtf50:
            out["mtf50"] = abs(self.mtf.mtf50 - spec.mtf50[0]) <= spec.mtf50[1]
        if spec.mtf10:
            out["mtf10"] = abs(self.mtf.mtf10 - spec.mtf10[0]) <= spec.mtf10[1]
        if spec.peak:
            out["peak"] = spec.peak[0] <= self.mtf.peak <= spec.peak[1]
        if spec.noise_ratio and self.noise_ratio is not None:
            lo, hi = spec.noise_ratio
            out["noise_ratio"] = lo - 1e-6 <= self.noise_ratio <= hi + 1e-6
        return out


def _pixel_of(ds: object, x_mm: float, y_mm: float) -> tuple[float, float]:
    ipp = [float(v) for v in ds.ImagePositionPatient]  # type: ignore[attr-defined]
    sp = [float(v) for v in ds.PixelSpacing]  # type: ignore[attr-defined]
    return (y_mm - ipp[1]) / sp[0], (x_mm - ipp[0]) / sp[1]


def measure_images(kernel: str, folder: str, images: list[np.ndarray],
                   first: object) -> QaResult:
    """MTF and noise of QA-phantom slices (HU images of one series; ``first`` its first
    dataset, for the geometry)."""
    pixel = float(first.PixelSpacing[0])  # type: ignore[attr-defined]
    rod = _pixel_of(first, *QA_ROD_CENTRE)
    uniform = _pixel_of(first, *QA_UNIFORM_CENTRE)
    try:
        mtf = circular_edge_mtf(images, pixel, rod, QA_ROD_RADIUS, QA_ROD_HU / 2)
    except ValueError as exc:
        raise InputError(f"{folder}: not a QA-phantom series ({exc})") from None
    sd = roi_noise_sd(images, uniform, QA_UNIFORM_RADIUS / pixel)
    return QaResult(kernel, folder, len(images), mtf, sd)


def measure_qa(folder: Path, reference: str = "B30f") -> list[QaResult]:
    """Measure every CT series under ``folder`` as a QA-phantom series."""
    found = discover(folder)
    if not found.series:
        raise InputError(f"{folder}: no CT series found")
    results = []
    for series in found.series:
        images, first = read_hu_slices([sl.path for sl in series.slices])
        result = measure_images(series.kernel or "?", series.folder, images, first)
        if len(images) >= 2:  # the same measurement on each half: how stable the figure is
            half = len(images) // 2
            a = measure_images(result.kernel, series.folder, images[:half], first)
            b = measure_images(result.kernel, series.folder, images[half:2 * half], first)
            result.split_half = {"mtf50": abs(a.mtf.mtf50 - b.mtf.mtf50),
                                 "mtf10": abs(a.mtf.mtf10 - b.mtf.mtf10)}
        results.append(result)
    ref = next((r for r in results if r.kernel == reference), None)
    for r in results:
        r.noise_ratio = r.noise_sd / ref.noise_sd if ref else None
    return results


def plot_mtf(results: list[QaResult], path: Path, table: dict[str, KernelResponse]) -> None:
    """MTF curves with the spec's MTF50/MTF10 targets marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in results:
        line, = ax.plot(r.mtf.freq_lpcm, r.mtf.mtf, label=f"{r.kernel} (measured)")
        spec = table.get(r.kernel)
        if spec and spec.mtf50 and spec.mtf10:
            ax.errorbar([spec.mtf50[0], spec.mtf10[0]], [0.5, 0.1],
                        xerr=[spec.mtf50[1], spec.mtf10[1]], fmt="o", color=line.get_color(),
                        capsize=3)
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xlabel("spatial frequency (lp/cm)")
    ax.set_ylabel("presampled MTF")
    ax.set_xlim(0, 14)
    ax.set_ylim(0, 1.6)
    ax.set_title("Simulated kernels: measured MTF (lines), spec MTF50/MTF10 (points)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def format_number(x: float) -> str:
    return "nan" if np.isnan(x) else f"{x:.2f}"
