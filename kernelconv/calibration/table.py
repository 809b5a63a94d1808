"""From fitted pairs to a site's kernel table: windows, fitted transfers, noise, figures.

A pair fixes only the RATIO of its two kernels' windows (everything else on the scanner is
common to both reconstructions and cancels), and that ratio is all the filter needs to convert
between them. To write absolute windows (which `simulate --kernel-table` needs, and which give
MTF50/MTF10 figures), one kernel is the *anchor*: the softest kernel of the calibration (lowest
measured noise). Its window is the response table's entry of that name when the table knows it,
else B30f's, and the file says which; every other kernel's window is the anchor's times the
fitted ratio, chained along the pairs (from the anchor outwards: W_sharp / W_soft is the inverse
of the sharp -> soft fit, which follows the kernels' ratio, where the soft -> sharp least squares
is the MMSE prediction and rolls off where the soft kernel kept little signal), normalised to
W(0) = 1 (a kernel's MTF(0) is 1; a fitted transfer's H(0)
may differ from 1 by the scanner's per-kernel CT-number calibration, :mod:`.fit`). Converting
between two calibrated kernels does not depend on the anchor: the table also stores every
fitted transfer, in both directions (each fitted directly: the least-squares prediction of one
kernel's image from the other's), and the filter uses a fitted transfer whenever one exists
for the pair it converts.

The noise ratio of each kernel is stored relative to the anchor (``noise_reference``), as
measured on the pairs' flat tiles, +- its spread over pairs (at least ``NOISE_TOLERANCE``). MTF
figures are those of each window on the reference scanner (the simulator's detector and focal
spot; :func:`kernelconv.kernel_response.mtf_figures`): absolute values inherit the anchor
assumption, ratios and the order of kernels do not.
"""

from __future__ import annotations

import datetime
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kernelconv.calibration.fit import (
    BIN_LPCM,
    Accumulator,
    PairNoise,
    TransferFit,
    accumulate,
    invert,
    pair_noise,
    solve,
)
from kernelconv.calibration.pairs import PairingError, SeriesPair
from kernelconv.dicom.dataset import read_hu_slices
from kernelconv.evaluation.qa import QaResult
from kernelconv.kernel_response import (
    KernelResponse,
    ResponseTable,
    load_response_table,
    mtf_crossing,
    mtf_figures,
)

FORMAT = "kernelconv-kernel-table"
NOISE_TOLERANCE = 0.05
#: largest window ratio written (a soft kernel's near-zero response would explode 1 / H)
MAX_RATIO = 50.0
ASSUMED_ANCHOR = "B30f"


@dataclass
class Calibration:
    """The result of `calibrate`: per-direction fits, per-pair noise, and the table."""

    pairs: list[SeriesPair]
    fits: dict[tuple[str, str], TransferFit]
    noise: list[PairNoise]
    slices_per_kernel_pair: dict[tuple[str, str], int]
    table: ResponseTable
    anchor: str
    anchor_basis: str

    def figures(self) -> list[dict[str, Any]]:
        """MTF50/MTF10/peak and noise ratio (to the anchor) per calibrated kernel."""
        rows = []
        for name, spec in self.table.items():
            m50, m10, peak = mtf_figures(spec)
            nr = spec.noise_ratio
            # beyond the last fitted frequency (the image Nyquist) the window is held, so a
            # crossing there is an extrapolation (the anchor's own window is not fitted)
            limit = None if name == self.anchor or not spec.tabulated else spec.tabulated[-1][0]
            rows.append({"kernel": name, "mtf50_lpcm": round(m50, 2), "mtf10_lpcm": round(m10, 2),
                         "peak": round(peak, 3),
                         "noise_ratio": None if nr is None else round(0.5 * (nr[0] + nr[1]), 3),
                         "noise_ratio_range": None if nr is None else [round(v, 3) for v in nr],
                         "noise_reference": self.anchor, "fitted_to_lpcm": limit,
                         "mtf50_extrapolated": limit is not None and m50 > limit,
                         "mtf10_extrapolated": limit is not None and m10 > limit})
        return sorted(rows, key=lambda r: r["mtf50_lpcm"])

    def to_json(self, command: str = "") -> dict[str, Any]:
        from kernelconv import __version__

        noise = []
        for pn in self.noise:
            f, soft = pn.soft_noise.radial()
            _, sharp = pn.sharp_noise.radial()
            noise.append({"soft": pn.soft, "sharp": pn.sharp, "ratio": round(pn.ratio, 4),
                          "soft_sd_hu": round(pn.soft_noise.sd, 3),
                          "sharp_sd_hu": round(pn.sharp_noise.sd, 3),
                          "tiles": pn.soft_noise.tiles,
                          "nps_freq_lpcm": [round(float(v), 3) for v in f],
                          "nps_soft_hu2cm2": [float(f"{v:.5g}") for v in soft],
                          "nps_sharp_hu2cm2": [float(f"{v:.5g}") for v in sharp]})
        return {
            "format": FORMAT, "version": 1,
            "kernels": [asdict(k) for k in self.table.values()],
            "transfers": [{"source": s, "target": t, "points": fit.points(), "tiles": fit.tiles,
                           "method": fit.method, "hu_regions": fit.region_shift,
                           "slices": self.slices_per_kernel_pair.get(_key(s, t), 0)}
                          for (s, t), fit in sorted(self.fits.items())],
            "calibration": {
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
                "kernelconv": __version__, "command": command,
                "anchor": self.anchor, "anchor_window": self.anchor_basis,
                "pairs": [{"kernels": list(p.kernels), "slices": len(p.slices),
                           "pixel_mm": p.pixel_mm, "matched_by": p.matched_by,
                           "source_folder": p.source.folder,
                           "reference_folder": p.reference.folder} for p in self.pairs],
                "figures": self.figures(),
                "noise": noise,
            },
        }


def _key(a: str, b: str) -> tuple[str, str]:
    """The kernel pair regardless of direction."""
    return (a, b) if a <= b else (b, a)


def _load(pair: SeriesPair) -> tuple[np.ndarray, np.ndarray]:
    x, _ = read_hu_slices([a.path for a, _ in pair.slices])
    y, _ = read_hu_slices([b.path for _, b in pair.slices])
    return np.stack(x).astype(np.float64), np.stack(y).astype(np.float64)


#: one calibration slice stack: (kernel of x, kernel of y, x (B, H, W) HU, y, pixel mm)
SliceStack = tuple[str, str, np.ndarray, np.ndarray, float]


def fit_arrays(stacks: Iterable[SliceStack], progress: Any = None
               ) -> tuple[dict[tuple[str, str], TransferFit], list[PairNoise],
                          dict[tuple[str, str], int]]:
    """Fit both directions of every kernel pair, pooling stacks of the same kernels, and
    measure each stack's noise; also the number of slices per kernel pair."""
    accs: dict[tuple[str, str], Accumulator] = defaultdict(Accumulator)
    noise: list[PairNoise] = []
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for ka, kb, x, y, pixel_mm in stacks:
        for i in range(len(x)):
            accumulate(accs[(ka, kb)], accs[(kb, ka)], x[i], y[i], pixel_mm)
            if progress is not None:
                progress()
        counts[_key(ka, kb)] += len(x)
        pn = pair_noise(x, y, ka, kb, pixel_mm)
        if pn is not None:
            noise.append(pn)
    fits = {key: solve(acc, *key) for key, acc in accs.items()}
    return fits, noise, dict(counts)


def fit_pairs(pairs: list[SeriesPair], progress: Any = None
              ) -> tuple[dict[tuple[str, str], TransferFit], list[PairNoise],
                         dict[tuple[str, str], int]]:
    """:func:`fit_arrays` on the slices of series pairs (read one pair at a time)."""
    def stacks() -> Iterator[SliceStack]:
        for pair in pairs:
            x, y = _load(pair)
            yield (*pair.kernels, x, y, pair.pixel_mm)

    return fit_arrays(stacks(), progress)


def _noise_of(noise: list[PairNoise]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for pn in noise:
        out[(pn.soft, pn.sharp)].append(pn.ratio)
        out[(pn.sharp, pn.soft)].append(1.0 / pn.ratio)
    return out


def build_table(pairs: list[SeriesPair], fits: dict[tuple[str, str], TransferFit],
                noise: list[PairNoise], counts: dict[tuple[str, str], int],
                base: ResponseTable | None = None,
                ratios: dict[tuple[str, str], list[float]] | None = None) -> Calibration:
    """Windows, noise ratios and sharpness of every calibrated kernel (module docstring);
    ``ratios`` (noise of k / noise of j per (j, k)) default to those of ``noise``."""
    known = base if base is not None else load_response_table()
    ratios = _noise_of(noise) if ratios is None else ratios
    kernels = sorted({k for key in fits for k in key})
    # softest: its partners' noise over its own is largest (mean log of measured ratios;
    # ratios[(j, k)] = noise of k / noise of j)
    score = {k: float(np.mean([np.log(r) for (a, _), rs in ratios.items() if a == k
                               for r in rs])) if any(a == k for a, _ in ratios) else 0.0
             for k in kernels}
    anchor = max(kernels, key=lambda k: score[k])  # kernels are sorted: ties by name
    if anchor in known and not known[anchor].tabulated:
        anchor_spec, basis = known[anchor], f"the response table's {anchor}"
    else:
        anchor_spec = known[ASSUMED_ANCHOR]
        basis = f"assumed: {ASSUMED_ANCHOR}'s window ({anchor} is not in the response table)"
    windows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    noise_to_anchor: dict[str, tuple[float, float]] = {anchor: (1.0, 1.0)}
    some_fit = next(iter(fits.values()))
    grid = some_fit.freq
    windows[anchor] = (grid, anchor_spec.window(grid))
    queue = deque([anchor])
    while queue:
        j = queue.popleft()
        for (a, b), fit in fits.items():
            if a != j or b in windows:
                continue
            k = b
            wj = np.interp(fit.freq, *windows[j])
            noise_jk = ratios.get((j, k), [])
            # W_k / W_j, up to the pair's CT-number calibration at f = 0: the inverse of the
            # k -> j fit where there is one (from the anchor, the softest, k -> j is sharp ->
            # soft, whose least squares follows the kernels' ratio; the soft -> sharp one is
            # the MMSE prediction, which rolls off where the soft kernel kept little signal)
            back = fits.get((k, j))
            h = 1.0 / np.maximum(back.h, 1.0 / MAX_RATIO) if back is not None and \
                len(back.h) == len(fit.h) else fit.h
            ratio = np.clip(h / h[0], 1.0 / MAX_RATIO, MAX_RATIO)
            last = len(fit.points())
            windows[k] = (fit.freq[:last], (wj * ratio)[:last])
            if noise_jk:
                m = float(np.mean(noise_jk))
                spread = max(NOISE_TOLERANCE * m, float(np.ptp(noise_jk)) / 2)
                lo, hi = noise_to_anchor[j]
                noise_to_anchor[k] = (lo * (m - spread), hi * (m + spread))
            queue.append(k)
    table: ResponseTable = {}
    for name in kernels:
        if name not in windows:
            continue
        f, w = windows[name]
        tab = tuple((round(float(a), 4), round(float(b), 6)) for a, b in zip(f, w, strict=True))
        # the parametric fields describe it roughly: cutoff = where W first falls to 0.5
        half = mtf_crossing(np.asarray(f), np.asarray(w), 0.5) if len(f) > 1 else 1.0
        spec = KernelResponse(name, cutoff=max(half, 0.1), order=1.0,
                              noise_ratio=noise_to_anchor.get(name), noise_reference=anchor,
                              tabulated=tab, source=f"kernelconv calibrate (anchor {anchor}: "
                              f"{basis})")
        m50 = mtf_figures(spec)[0]
        table[name] = KernelResponse(**{**asdict(spec), "sharpness": round(10.0 * m50, 1),
                                        "tabulated": tab})
    return Calibration(pairs, fits, noise, counts, table, anchor, basis)


#: a QA measurement's MTF below this is not used for a ratio (the ratio holds beyond)
MIN_QA_MTF = 0.05


def qa_calibration(results: list[QaResult]) -> Calibration:
    """The same table from QA-phantom scans, one per kernel, of the same phantom and dose
    (`kernelconv qa` measures them): H_{j -> k} = MTF_k / MTF_j where MTF_j >= ``MIN_QA_MTF``
    (held beyond), the noise ratio from the uniform region's SD. No NPS (the QA measurement
    gives an SD only)."""
    if len(results) < 2 or len({r.kernel for r in results}) < len(results):
        raise PairingError("--qa needs QA-phantom series of at least two different kernels, "
                           "one series per kernel")
    top = min(float(r.mtf.freq_lpcm[-1]) for r in results)
    grid = np.arange(0.0, top + 1e-9, BIN_LPCM)
    mtf = {r.kernel: np.interp(grid, r.mtf.freq_lpcm, r.mtf.mtf / r.mtf.mtf[0])
           for r in results}
    sd = {r.kernel: r.noise_sd for r in results}
    fits: dict[tuple[str, str], TransferFit] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    for j in mtf:
        for k in mtf:
            if j == k:
                continue
            ratios[(j, k)] = [sd[k] / sd[j]]
            if sd[j] > sd[k] or (sd[j] == sd[k] and j > k):
                continue  # filled as the inverse of the soft -> sharp ratio below
            ok = (mtf[j] >= MIN_QA_MTF) & (mtf[k] >= MIN_QA_MTF)
            ok[0] = True
            last = int(np.nonzero(~ok)[0][0]) if (~ok).any() else len(grid)
            h = np.ones_like(grid)
            h[:last] = mtf[k][:last] / mtf[j][:last]
            h[last:] = h[last - 1]
            fitted = np.zeros(len(grid), bool)
            fitted[:last] = True
            up = TransferFit(j, k, grid, h, fitted, 0, method="MTF ratio of QA-phantom scans")
            fits[(j, k)] = up
            fits[(k, j)] = invert(up)
    return build_table([], fits, [], {}, ratios=ratios)
