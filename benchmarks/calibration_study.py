"""How well a site calibration converts, and how many slices it needs (docs/calibration.md).

    python benchmarks/calibration_study.py --phantom ../shared/data/real-ct-canon-phantom \\
        --sim-train data/train/sim-reference --sim-test data/heldout/sim-reference

1. Real scanner (the Canon phantom, FC51 and FC13 from the same raw data): calibrate on one
   phantom's slices (`--pair`), convert the other's, both directions; beside identity, the
   uncalibrated filter (FC51/FC13 read as B70f/B30f, and under their own names when the
   response table knows them) and an independent least-squares baseline: a 2-D linear filter
   (FIR, ``FIR`` x ``FIR`` taps) fitted by least squares on the calibration slices' unclipped
   pixels. Then leave-slices-out over all four slices: fit on k, test on the others.
2. Slices needed (simulator, where the true kernels are known): calibrate on k slice pairs of
   the training patients (several random draws), convert the held-out patients; PSNR against
   the true target beside the filter with the exact (built-in) windows.

PSNR over [-1024, 3071] HU on the whole slice; inputs as stored (the filter fills out-of-field
padding itself).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from scipy.signal import fftconvolve

from kernelconv.calibration.table import build_table, fit_arrays
from kernelconv.dicom.dataset import decode_hu, pixel_spacing_mm
from kernelconv.engines.filter_engine import PADDING_HU, FilterEngine
from kernelconv.evaluation.metrics import psnr
from kernelconv.kernel_response import load_response_table
from kernelconv.noise import unclipped

FIR = 15
PHANTOM_AS = {"FC51": "B70f", "FC13": "B30f"}


def read_folder(folder: Path) -> tuple[np.ndarray, float]:
    """(slices sorted by z, pixel mm) of a one-series folder."""
    items = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() != ".dcm" and not p.name.startswith("IM"):
            continue
        ds = pydicom.dcmread(p)
        items.append((float(ds.ImagePositionPatient[2]), decode_hu(ds, p)[1][0]))
        px = pixel_spacing_mm(ds) or 0.0
    items.sort(key=lambda t: t[0])
    return np.stack([im for _, im in items]).astype(np.float64), px


def score(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([psnr(np.clip(p, -1024, 3071), np.clip(r, -1024, 3071))
                          for p, r in zip(pred, ref, strict=True)]))


def calibrated_engine(stacks: list[tuple[str, str, np.ndarray, np.ndarray, float]]
                      ) -> FilterEngine:
    fits, noise, counts = fit_arrays(stacks)
    cal = build_table([], fits, noise, counts)
    transfers = {k: np.asarray(f.points()) for k, f in fits.items()}
    engine = FilterEngine({**load_response_table(), **cal.table}, transfers=transfers)
    engine.fit_tiles = min(f.tiles for f in fits.values())  # type: ignore[attr-defined]
    return engine


def fir_fit(x: np.ndarray, y: np.ndarray, n: int = FIR, samples: int = 200_000,
            seed: int = 0) -> np.ndarray:
    """Least-squares n x n FIR filter predicting y from x on pixels whose whole neighbourhood
    (and the target pixel) is unclipped."""
    r = n // 2
    rng = np.random.default_rng(seed)
    rows, targets = [], []
    for xs, ys in zip(x, y, strict=True):
        ok = unclipped(xs) & unclipped(ys)
        # a pixel counts when every pixel of its neighbourhood is unclipped
        bad = fftconvolve((~ok).astype(float), np.ones((n, n)), mode="same") > 0.5
        cand = np.argwhere(~bad[r:-r, r:-r]) + r
        pick = cand[rng.choice(len(cand), min(samples // len(x), len(cand)), replace=False)]
        for i, j in pick:
            rows.append(xs[i - r:i + r + 1, j - r:j + r + 1].ravel())
            targets.append(ys[i, j])
    a, b = np.asarray(rows), np.asarray(targets)
    h, *_ = np.linalg.lstsq(a, b, rcond=None)
    return h.reshape(n, n)[::-1, ::-1]


def fir_apply(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    pad = x <= PADDING_HU
    xf = np.where(pad, -1024.0, x)
    r = h.shape[0] // 2
    out = np.stack([fftconvolve(np.pad(s, r, mode="reflect"), h, mode="valid") for s in xf])
    return np.where(pad, x, out)


def phantom_study(root: Path) -> None:
    data = {(ph, k): read_folder(root / ph / k) for ph in ("phantom1", "phantom2")
            for k in ("FC51", "FC13")}
    limited, plain = FilterEngine(), FilterEngine(noise_limit=False)
    known = load_response_table()
    print("## Real Canon phantom: calibrate on one phantom, convert the other\n")
    print("| calibration -> test | direction | identity | plain filter as B70f/B30f | "
          "noise-limited filter as B70f/B30f | noise-limited filter, own names (vendor "
          "estimates) | calibrated filter | 2-D LSQ FIR | noise ratio cal./true |")
    print("|---|---|---|---|---|---|---|---|---|")
    calibrated: dict[str, list[float]] = {"FC51 -> FC13": [], "FC13 -> FC51": []}
    for cal, test in (("phantom1", "phantom2"), ("phantom2", "phantom1")):
        (x51, px), (x13, _) = data[(cal, "FC51")], data[(cal, "FC13")]
        eng = calibrated_engine([("FC51", "FC13", x51, x13, px)])
        for src, dst in (("FC51", "FC13"), ("FC13", "FC51")):
            xs, _ = data[(test, src)]
            ref, _ = data[(test, dst)]
            a, b = PHANTOM_AS[src], PHANTOM_AS[dst]
            own = (f"{score(limited.convert(xs, src, dst, px), ref):.2f}"
                   if src in known and dst in known else "-")
            pred = eng.convert(xs, src, dst, px)
            calibrated[f"{src} -> {dst}"].append(score(pred, ref))
            h = fir_fit(data[(cal, src)][0], data[(cal, dst)][0])
            ratio = _noise_ratio(pred, ref, xs, px)
            print(f"| {cal} -> {test} | {src} -> {dst} | {score(xs, ref):.2f} | "
                  f"{score(plain.convert(xs, a, b, px), ref):.2f} | "
                  f"{score(limited.convert(xs, a, b, px), ref):.2f} | {own} | "
                  f"{score(pred, ref):.2f} | {score(fir_apply(xs, h), ref):.2f} | {ratio} |")
    print("\nCalibrated filter over the two splits (2 test slices each): " + "; ".join(
        f"{d} mean {np.mean(v):.2f} dB (range {min(v):.2f}-{max(v):.2f})"
        for d, v in calibrated.items()))
    print("\n## Out-of-field padding: FC51 read as B70f -> B30f (plain filter), test slices\n")
    import kernelconv.engines.filter_engine as fe

    print("| phantom | padding filtered as stored (before) | padding filled and kept (now) |")
    print("|---|---|---|")
    for ph in ("phantom1", "phantom2"):
        xs, px = data[(ph, "FC51")]
        ref, _ = data[(ph, "FC13")]
        now = score(plain.convert(xs, "B70f", "B30f", px), ref)
        keep, fe.PADDING_HU = fe.PADDING_HU, -1e9  # no pixel counts as padding: the old filter
        try:
            before = score(plain.convert(xs, "B70f", "B30f", px), ref)
        finally:
            fe.PADDING_HU = keep
        print(f"| {ph} | {before:.2f} | {now:.2f} |")
    print("\n## Real Canon phantom: leave-slices-out (fit on k of the 4 slices, test on the "
          "rest)\n")
    print("| k | FC51 -> FC13 | FC13 -> FC51 | draws |")
    print("|---|---|---|---|")
    x51 = np.concatenate([data[("phantom1", "FC51")][0], data[("phantom2", "FC51")][0]])
    x13 = np.concatenate([data[("phantom1", "FC13")][0], data[("phantom2", "FC13")][0]])
    px = data[("phantom1", "FC51")][1]
    singles = []
    for k in (1, 2, 3):
        res: dict[str, list[float]] = {"FC51 -> FC13": [], "FC13 -> FC51": []}
        draws = list(_subsets(4, k))
        for train in draws:
            test = [i for i in range(4) if i not in train]
            eng = calibrated_engine([("FC51", "FC13", x51[train], x13[train], px)])
            if k == 1:
                tiles = eng.fit_tiles
                singles.append((train[0], tiles))
            res["FC51 -> FC13"].append(score(eng.convert(x51[test], "FC51", "FC13", px),
                                             x13[test]))
            res["FC13 -> FC51"].append(score(eng.convert(x13[test], "FC13", "FC51", px),
                                             x51[test]))
        print(f"| {k} | " + " | ".join(f"{np.mean(v):.2f} (range {min(v):.2f}-{max(v):.2f})"
                                       for v in res.values()) + f" | {len(draws)} |")
        if k == 1:
            one = res
    print("\nSingle calibration slices (k = 1): slice, unclipped tiles it gave, PSNR on the "
          "other three\n")
    print("| slice | tiles | FC51 -> FC13 | FC13 -> FC51 |")
    print("|---|---|---|---|")
    for n, (i, tiles) in enumerate(singles):
        print(f"| {i} | {tiles} | {one['FC51 -> FC13'][n]:.2f} | {one['FC13 -> FC51'][n]:.2f} |")


def _noise_ratio(pred: np.ndarray, ref: np.ndarray, x: np.ndarray, px: float) -> str:
    from kernelconv.noise import flat_tiles, measure_noise

    tiles = flat_tiles(x, px)
    a, b = measure_noise(pred, px, tiles), measure_noise(ref, px, tiles)
    return "-" if a is None or b is None else f"{a.sd / b.sd:.2f}"


def _subsets(n: int, k: int) -> Iterator[list[int]]:
    from itertools import combinations

    for c in combinations(range(n), k):
        yield list(c)


def sim_stacks(root: Path, kernels: tuple[str, str]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    out = []
    for patient in sorted(p for p in root.iterdir() if p.is_dir()):
        (a, px), (b, _) = read_folder(patient / kernels[0]), read_folder(patient / kernels[1])
        out.append((a, b, px))
    return out


def slices_study(train: Path, test: Path, draws: int = 3) -> None:
    print("\n## Slices needed (simulator): calibrate on k training slices, convert held-out "
          "patients\n")
    print("| direction | exact-window filter | " + " | ".join(f"k = {k}" for k in SLICE_COUNTS)
          + " |")
    print("|---|---|" + "---|" * len(SLICE_COUNTS))
    exact = FilterEngine()
    for src, dst in (("B70f", "B30f"), ("B30f", "B70f"), ("B50f", "B30f"), ("B30f", "B50f")):
        tr = sim_stacks(train, (src, dst))
        te = sim_stacks(test, (src, dst))
        xs = [(a[i], b[i], px) for a, b, px in tr for i in range(len(a))]
        base = np.mean([score(exact.convert(a, src, dst, px), b) for a, b, px in te])
        cells = []
        for k in SLICE_COUNTS:
            if k > len(xs):
                cells.append("-")
                continue
            vals = []
            for d in range(draws):
                pick = np.random.default_rng(100 * k + d).choice(len(xs), k, replace=False)
                stacks = [(src, dst, xs[i][0][None], xs[i][1][None], xs[i][2]) for i in pick]
                eng = calibrated_engine(stacks)
                vals.append(float(np.mean([score(eng.convert(a, src, dst, px), b)
                                           for a, b, px in te])))
            cells.append(f"{np.mean(vals):.2f} +- {np.std(vals):.2f}")
        print(f"| {src} -> {dst} | {base:.2f} | " + " | ".join(cells) + " |")


SLICE_COUNTS = (1, 2, 4, 8, 16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phantom", type=Path)
    ap.add_argument("--sim-train", type=Path)
    ap.add_argument("--sim-test", type=Path)
    args = ap.parse_args()
    if args.phantom:
        phantom_study(args.phantom)
    if args.sim_train and args.sim_test:
        slices_study(args.sim_train, args.sim_test)


if __name__ == "__main__":
    main()
