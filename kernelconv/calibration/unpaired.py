"""Calibration without pairs: a site's kernel table from an archive of single-kernel series.

The paper's setting made practical: an archive where each scan exists in one kernel only
(different patients, different positions). No image pairs a kernel with another, but every
series shows its own kernel in its noise (:mod:`kernelconv.fingerprint`): NPS ~ f W(f)^2. So
each series is fingerprinted, the fingerprints of one kernel name are pooled (the mean of
their log windows, weighted by 1 / uncertainty^2), and the table holds one window per kernel.

What the fingerprint cannot know is the scanner's own noise shaping (interpolation, detector
sampling), which is common to all kernels of one scanner: it cancels in the ratio of two
windows, which is all the filter uses to convert between two kernels of the archive. To keep
conversions to the built-in kernels consistent, the windows are *anchored* as a paired
calibration's are (kernelconv.calibration.table): the softest archive kernel that the response
table knows keeps the table's window, and every other kernel's window is that times its
fingerprint ratio to the anchor. With no known kernel in the archive the fingerprints are used
as they are.

The table is the same JSON a paired calibration writes (kernels, no fitted transfers: the
filter converts between the windows with its Wiener regularisation and noise limit), so
``convert --method filter --kernel-table`` reads it. Each kernel records the series it was
estimated from, its uncertainty (within-kernel spread and the fingerprints' own), and the
basis "ESTIMATE from the images, unpaired".
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kernelconv.dicom.discovery import Series, discover
from kernelconv.errors import InputError
from kernelconv.fingerprint import Fingerprint, equivalent_number
from kernelconv.kernel_response import (
    PROJECTION_NYQUIST_LPCM,
    KernelResponse,
    ResponseTable,
    builtin_table,
    mtf_figures,
)

#: frequencies (lp/cm) the pooled windows are tabulated at
GRID = np.round(np.arange(0.0, PROJECTION_NYQUIST_LPCM + 0.25, 0.25), 4)
#: a kernel needs at least this many fingerprinted series
MIN_SERIES = 1


class UnpairedError(InputError):
    """The archive cannot calibrate anything (no series whose kernel shows in its noise)."""


@dataclass
class SeriesPrint:
    """One archive series and its fingerprint."""

    folder: str
    kernel: str
    fingerprint: Fingerprint

    def to_json(self) -> dict[str, Any]:
        return {"folder": self.folder, "kernel": self.kernel, **self.fingerprint.to_json()}


@dataclass
class UnpairedCalibration:
    """The pooled windows per kernel, the anchor, and every series' fingerprint."""

    table: ResponseTable
    anchor: str | None
    anchor_basis: str
    prints: list[SeriesPrint]

    def figures(self) -> list[dict[str, Any]]:
        rows = []
        for name, spec in self.table.items():
            m50, m10, peak = mtf_figures(spec)
            used = [p for p in self.prints if p.kernel == name and p.fingerprint.valid]
            rows.append({"kernel": name, "mtf50_lpcm": round(m50, 2),
                         "mtf10_lpcm": round(m10, 2), "peak": round(peak, 3),
                         "uncertainty": round(spec.uncertainty, 3), "series": len(used),
                         "tiles": sum(p.fingerprint.tiles for p in used)})
        return sorted(rows, key=lambda r: r["mtf50_lpcm"])

    def to_json(self, command: str = "") -> dict[str, Any]:
        from kernelconv import __version__
        from kernelconv.calibration.table import FORMAT

        return {
            "format": FORMAT, "version": 1,
            "kernels": [asdict(k) for k in self.table.values()],
            "transfers": [],
            "calibration": {
                "method": "unpaired: each kernel's response from its series' noise "
                          "(kernelconv.fingerprint), pooled per kernel name",
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
                "kernelconv": __version__, "command": command,
                "anchor": self.anchor, "anchor_window": self.anchor_basis,
                "figures": self.figures(),
                "series": [p.to_json() for p in self.prints],
            },
        }


def _pooled(prints: list[Fingerprint]) -> tuple[np.ndarray, float]:
    """The mean log window of one kernel's fingerprints on :data:`GRID` (weights 1/u^2) and
    its uncertainty: the weighted mean's, with the spread between series added."""
    logs = np.stack([np.log(np.maximum(fp.response.window(GRID), 1e-6))  # type: ignore[union-attr]
                     for fp in prints])
    w = np.array([1.0 / max(fp.uncertainty, 1e-3) ** 2 for fp in prints])
    mean = (w[:, None] * logs).sum(axis=0) / w.sum()
    within = float(np.sqrt(1.0 / w.sum()))
    m50 = np.log([fp.mtf50 for fp in prints if fp.mtf50])
    between = float(np.std(m50)) if len(m50) > 1 else 0.0
    return np.exp(mean), float(np.hypot(within, between))


def calibrate_unpaired(archive: Path, progress: Callable[[str], None] | None = None,
                       known: ResponseTable | None = None) -> UnpairedCalibration:
    """Fingerprint every CT series under ``archive`` and pool them per kernel name."""
    from kernelconv.pipeline import fingerprint_series

    found = discover(archive)
    usable: list[Series] = [s for s in found.series if not s.error and s.kernel]
    if not usable:
        raise UnpairedError(f"{archive}: no CT series with a kernel name to calibrate from")
    prints = []
    for series in usable:
        if progress:
            progress(series.folder)
        assert series.kernel is not None
        prints.append(SeriesPrint(series.folder, series.kernel.strip(),
                                  fingerprint_series(series, series.kernel)))
    by_kernel: dict[str, list[Fingerprint]] = defaultdict(list)
    for p in prints:
        if p.fingerprint.valid:
            by_kernel[p.kernel].append(p.fingerprint)
    if not by_kernel:
        reasons = sorted({p.fingerprint.reason for p in prints})
        raise UnpairedError(f"{archive}: no series shows its kernel in its noise "
                            f"({'; '.join(reasons)[:200]})")
    pooled = {k: _pooled(v) for k, v in by_kernel.items() if len(v) >= MIN_SERIES}
    table_known = known if known is not None else builtin_table()
    band = (GRID >= 3.0) & (GRID <= 6.0)  # where kernels differ most: the softest is lowest
    soft_first = sorted(pooled, key=lambda k: (float(pooled[k][0][band].mean()), k))
    anchor = next((k for k in soft_first if k in table_known
                   and not table_known[k].tabulated), None)
    if anchor is not None:
        ref = table_known[anchor].window(GRID) / pooled[anchor][0]
        basis = (f"the response table's {anchor}; the other kernels relative to it by their "
                 "fingerprints")
    else:
        ref = np.ones_like(GRID)
        basis = "none of the archive's kernels is in the response table: fingerprints as they are"
    table: ResponseTable = {}
    for kernel, (window, u) in pooled.items():
        w = window * ref
        w = w / w[0]
        tab = tuple((float(f), round(float(v), 6)) for f, v in zip(GRID, w, strict=True))
        n = len(by_kernel[kernel])
        spec = KernelResponse(kernel, cutoff=1.0, order=1.0, tabulated=tab,
                              uncertainty=round(float(max(u, 0.05)), 4),
                              source=f"ESTIMATE from the images, unpaired: {n} series' noise "
                                     f"spectra (kernelconv calibrate --unpaired; anchor: "
                                     f"{anchor or 'none'})")
        m50 = mtf_figures(spec)[0]
        table[kernel] = replace(spec, sharpness=round(equivalent_number(m50), 1),
                                mtf50=(round(m50, 3), round(spec.uncertainty * m50, 3)))
    return UnpairedCalibration(table, anchor, basis, prints)
