"""How well a site calibration converts, and how many slices it needs (docs/calibration.md).

    python benchmarks/calibration_study.py --real \
        --phantom examples/data/canon-phantom \
        --siemens ../shared/data/real-ct-siemens-chest-pair/Lung_Dx-A0002 --variants
    python benchmarks/calibration_study.py --phantom ../shared/data/real-ct-canon-phantom \
        --sim-train data/train/sim-reference --sim-test data/heldout/sim-reference

1. ``--real``: every real pair, calibrated on one part and tested on the other (Canon phantom1
   <-> phantom2; the Siemens chest's first half of the slice positions <-> its second half),
   both directions. Per case: the calibrated filter's PSNR (mean over the test slices and
   per-slice SD), beside the unchanged image and three oracles fitted on the TEST pair itself:
   the same calibration run on the test slices, the plain least squares of
   :mod:`kernelconv.calibration.fit` without its HU-check constraint (when the installed
   package has it), and a 2-D linear filter (FIR, ``FIR`` x ``FIR`` taps, not radial) fitted
   by least squares on the test slices' unclipped pixels. Then convert's HU check on the
   calibrated conversion (the input clipped to the stored window, the output as the filter
   gives it, the expected noise ratio from the calibrated table: what `convert` runs) and on
   the true target treated as the converter's output: per-region bias (soft tissue, fat, lung)
   of both, and the largest difference. ``--variants`` adds the ideas tried for the fit's low
   frequencies, each solved from the same sums.
2. ``--phantom`` alone: the Canon phantom beside the uncalibrated filters (FC51/FC13 read as
   B70f/B30f, and under their own names), the padding study and leave-slices-out.
3. Slices needed (simulator, where the true kernels are known): calibrate on k slice pairs of
   the training patients (several random draws), convert the held-out patients; PSNR against
   the true target beside the filter with the exact (built-in) windows.

PSNR over [-1024, 3071] HU on the whole slice (range 4095), the output rounded and clipped as
`convert` stores it; inputs as stored (the filter fills out-of-field padding itself).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from scipy.signal import fftconvolve

from kernelconv.calibration.table import build_table, fit_arrays
from kernelconv.dicom.dataset import decode_hu, pixel_spacing_mm
from kernelconv.engines.filter_engine import PADDING_HU, FilterEngine
from kernelconv.evaluation.metrics import psnr
from kernelconv.hu import HU_MAX, HU_MIN
from kernelconv.hu_check import LOWPASS_SIGMA_MM, HuCheck
from kernelconv.kernel_response import KernelTable, load_response_table
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


def slice_scores(pred: np.ndarray, ref: np.ndarray) -> list[float]:
    """Per-slice PSNR of the output as `convert` stores it (rounded, clipped)."""
    return [psnr(np.clip(np.round(p), -1024, 3071), np.clip(r, -1024, 3071))
            for p, r in zip(pred, ref, strict=True)]


def score(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(slice_scores(pred, ref)))


def calibrated_engine(stacks: list[tuple[str, str, np.ndarray, np.ndarray, float]]
                      ) -> FilterEngine:
    fits, noise, counts = fit_arrays(stacks)
    cal = build_table([], fits, noise, counts)
    transfers = {k: np.asarray(f.points()) for k, f in fits.items()}
    engine = FilterEngine({**load_response_table(), **cal.table}, transfers=transfers)
    FIT_TILES[id(engine)] = min(f.tiles for f in fits.values())
    return engine


#: the unclipped tiles a calibrated engine's fit counted, by id(engine)
FIT_TILES: dict[int, int] = {}


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
            rest = [i for i in range(4) if i not in train]
            eng = calibrated_engine([("FC51", "FC13", x51[train], x13[train], px)])
            if k == 1:
                singles.append((train[0], FIT_TILES[id(eng)]))
            res["FC51 -> FC13"].append(score(eng.convert(x51[rest], "FC51", "FC13", px),
                                             x13[rest]))
            res["FC13 -> FC51"].append(score(eng.convert(x13[rest], "FC13", "FC51", px),
                                             x51[rest]))
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


#: one real-pair case: (pair, "calibration part -> test part", sharp kernel, soft kernel,
#: calibration (sharp, soft) slices, test (sharp, soft) slices, pixel mm)
RealCase = tuple[str, str, str, str, tuple[np.ndarray, np.ndarray],
                 tuple[np.ndarray, np.ndarray], float]
REGIONS = ("soft tissue", "fat", "lung")


def real_cases(phantom: Path | None, siemens: Path | None) -> list[RealCase]:
    """Canon phantom1 <-> phantom2 and the Siemens chest's first <-> second half."""
    cases: list[RealCase] = []
    if phantom is not None:
        d = {(ph, k): read_folder(phantom / ph / k) for ph in ("phantom1", "phantom2")
             for k in ("FC51", "FC13")}
        for cal, test in (("phantom1", "phantom2"), ("phantom2", "phantom1")):
            cases.append((f"Canon phantom ({phantom.name})", f"{cal} -> {test}", "FC51", "FC13",
                          (d[(cal, "FC51")][0], d[(cal, "FC13")][0]),
                          (d[(test, "FC51")][0], d[(test, "FC13")][0]), d[(cal, "FC51")][1]))
    if siemens is not None:
        (a, px), (b, _) = read_folder(siemens / "B70f"), read_folder(siemens / "B40f")
        h = len(a) // 2
        zs = f"{len(a)} slices"
        first, second = (a[:h], b[:h]), (a[h:], b[h:])
        cases.append((f"Siemens chest ({siemens.name}, {zs})", f"first {h} -> last {len(a) - h}",
                      "B70f", "B40f", first, second, px))
        cases.append((f"Siemens chest ({siemens.name}, {zs})", f"last {len(a) - h} -> first {h}",
                      "B70f", "B40f", second, first, px))
    return cases


def table_engine(fits: dict[tuple[str, str], Any], noise: list[Any]) -> FilterEngine:
    """The filter on the built-in kernels plus a calibration's, with its fitted transfers."""
    cal = build_table([], fits, noise, {})
    return FilterEngine(KernelTable({**load_response_table(), **cal.table},
                                    {k: np.asarray(f.points()) for k, f in fits.items()},
                                    "calibration"))


def hu_bias(engine: FilterEngine, x: np.ndarray, out: np.ndarray, src: str, dst: str,
            px: float) -> HuCheck:
    """convert's HU check of one conversion (input clipped to the stored window, the output
    as the engine gives it, the expected noise ratio from the engine's kernel table)."""
    check = HuCheck(expected_noise_ratio=engine.kernel_table.expected_noise_ratio(
        src, dst, highpass_sigma_mm=LOWPASS_SIGMA_MM))
    check.add(np.clip(x, HU_MIN, HU_MAX), out, px)
    return check


def _bias(check: HuCheck) -> str:
    return "/".join("-" if check.bias_hu[r] is None else f"{check.bias_hu[r]:+.1f}"  # type: ignore[str-format]
                    for r in REGIONS)


def _gap(a: HuCheck, b: HuCheck) -> float | None:
    d = [abs(a.bias_hu[r] - b.bias_hu[r]) for r in REGIONS  # type: ignore[operator]
         if a.bias_hu[r] is not None and b.bias_hu[r] is not None]
    return max(d) if d else None


def body_air_mse(pred: np.ndarray, ref: np.ndarray, px: float) -> tuple[float, float]:
    """Mean squared error (HU^2, stored range) inside the patient and in the field outside it
    (the body outline of the HU check, on the reference low-passed with 5 mm)."""
    from kernelconv.hu_check import _body, lowpass

    inside, outside = [], []
    for p, r in zip(pred, ref, strict=True):
        body = _body(lowpass(np.clip(r, HU_MIN, HU_MAX), px, 5.0)) & (r > PADDING_HU)
        e = (np.clip(np.round(p), HU_MIN, HU_MAX) - np.clip(r, HU_MIN, HU_MAX)) ** 2
        inside.append(float(e[body].mean()))
        outside.append(float(e[~body & (r > PADDING_HU)].mean()))
    return float(np.mean(inside)), float(np.mean(outside))


def _accumulate(sharp: str, soft: str, x: np.ndarray, y: np.ndarray, px: float
                ) -> tuple[dict[tuple[str, str], Any], list[Any]]:
    """Both directions' least-squares sums of one stack and its noise measurement."""
    from kernelconv.calibration.fit import Accumulator, accumulate, pair_noise

    ab, ba = Accumulator(), Accumulator()
    for i in range(len(x)):
        accumulate(ab, ba, x[i], y[i], px)
    pn = pair_noise(x, y, sharp, soft, px)
    return {(sharp, soft): ab, (soft, sharp): ba}, [] if pn is None else [pn]


def real_study(cases: list[RealCase], variants: bool) -> dict[str, Any]:
    """The real-pair table (module docstring, 1); returns its figures."""
    import inspect

    from kernelconv.calibration.fit import solve

    plain_lsq = "region_weight" in inspect.signature(solve).parameters
    print("## Real pairs: calibrated on one part, converted the other\n")
    print("| pair | calibration -> test | direction | slices | identity | **calibrated** "
          "(per-slice SD) | oracle: same calibration on the test slices | oracle: plain least "
          "squares on the test slices | oracle: 2-D LSQ FIR on the test slices | below the "
          "best oracle, dB | HU check | bias soft/fat/lung HU, calibrated | the true "
          "target's | largest difference HU | MSE inside / outside the patient HU^2, "
          "calibrated | the same, plain least squares on the test slices |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    out: dict[str, Any] = {"cases": []}
    variant_rows: dict[str, list[tuple[str, float, float | None]]] = defaultdict(list)
    for pair, split, sharp, soft, cal, test, px in cases:
        fits, noise, _ = fit_arrays([(sharp, soft, cal[0], cal[1], px)])
        eng = table_engine(fits, noise)
        tfits, tnoise, _ = fit_arrays([(sharp, soft, test[0], test[1], px)])
        same = table_engine(tfits, tnoise)
        lsq = None
        if plain_lsq:
            taccs, tn = _accumulate(sharp, soft, test[0], test[1], px)
            lsq = table_engine({k: solve(a, *k, region_weight=0.0) for k, a in taccs.items()},
                               tn)
        if variants:
            caccs, cn = _accumulate(sharp, soft, cal[0], cal[1], px)
        for k, (src, dst) in enumerate(((sharp, soft), (soft, sharp))):
            x, ref = (test[0], test[1]) if k == 0 else (test[1], test[0])
            pred = eng.convert(x, src, dst, px)
            per_slice = slice_scores(pred, ref)
            mine = float(np.mean(per_slice))
            oracles = {"same": score(same.convert(x, src, dst, px), ref),
                       "lsq": None if lsq is None else score(lsq.convert(x, src, dst, px), ref),
                       "fir": score(fir_apply(x, fir_fit(x, ref, samples=100_000)), ref)}
            best = max(v for v in oracles.values() if v is not None)
            check = hu_bias(eng, x, pred, src, dst, px)
            truth = hu_bias(eng, x, ref, src, dst, px)
            gap = _gap(check, truth)
            sd = float(np.std(per_slice, ddof=1)) if len(per_slice) > 1 else float("nan")
            lsq_cell = "-" if oracles["lsq"] is None else f"{oracles['lsq']:.2f}"
            mse = body_air_mse(pred, ref, px)
            mse_lsq = None if lsq is None else body_air_mse(lsq.convert(x, src, dst, px), ref,
                                                            px)
            lsq_mse_cell = "-" if mse_lsq is None else f"{mse_lsq[0]:.1f} / {mse_lsq[1]:.1f}"
            print(f"| {pair} | {split} | {src} -> {dst} | {len(x)} | {score(x, ref):.2f} | "
                  f"**{mine:.2f}** ({sd:.2f}) | {oracles['same']:.2f} | {lsq_cell} | "
                  f"{oracles['fir']:.2f} | {best - mine:.2f} | "
                  f"{'accepted' if check.passed else 'REFUSED'} | {_bias(check)} | "
                  f"{_bias(truth)} | {'-' if gap is None else f'{gap:.2f}'} | "
                  f"{mse[0]:.1f} / {mse[1]:.1f} | {lsq_mse_cell} |")
            out["cases"].append({"pair": pair, "split": split, "direction": f"{src} -> {dst}",
                                 "slices": len(x), "identity": score(x, ref), "psnr": mine,
                                 "psnr_sd": sd, "psnr_slices": per_slice, "oracles": oracles,
                                 "hu_check_passed": check.passed, "bias": check.bias_hu,
                                 "truth_bias": truth.bias_hu, "largest_bias_gap": gap,
                                 "mse_inside_outside": mse, "plain_lsq_mse_inside_outside":
                                 mse_lsq})
            if variants:
                for name, kw in VARIANTS.items():
                    v = table_engine({key: solve(a, *key, **kw) for key, a in caccs.items()}, cn)
                    vp = v.convert(x, src, dst, px)
                    variant_rows[name].append((f"{split} {src} -> {dst}", best - score(vp, ref),
                                               _gap(hu_bias(v, x, vp, src, dst, px), truth)))
    if variants:
        print("\n## The fit's low frequencies: variants, each solved from the same sums\n")
        cols = [c for c, _, _ in next(iter(variant_rows.values()))]
        print("| variant | " + " | ".join(cols) + " | worst |")
        print("|---|" + "---|" * (len(cols) + 1))
        for name, rows in variant_rows.items():
            cells = [f"{d:.2f} dB, {'-' if g is None else f'{g:.1f}'} HU" for _, d, g in rows]
            worst_db = max(d for _, d, _ in rows)
            worst_hu = max((g for _, _, g in rows if g is not None), default=float("nan"))
            print(f"| {name} | " + " | ".join(cells) + f" | {worst_db:.2f} dB, "
                  f"{worst_hu:.1f} HU |")
        print("\nEach cell: below the best oracle (dB), and the largest per-region difference "
              "to the true target's low-pass shift (HU).")
        out["variants"] = {k: [list(r) for r in v] for k, v in variant_rows.items()}
    return out


#: the ideas tried for the low frequencies (:func:`kernelconv.calibration.fit.solve`'s options)
VARIANTS: dict[str, dict[str, Any]] = {
    "plain least squares": {"region_weight": 0.0},
    "plain least squares, H(0) = 1": {"region_weight": 0.0, "pin_below_lpcm": 0.0},
    "plain least squares, H = 1 up to 0.75 lp/cm (curvature-penalty blend above)":
        {"region_weight": 0.0, "pin_below_lpcm": 0.75},
    "HU-check regions held to the truth's shift, H(0) = 1": {"pin_below_lpcm": 0.0},
    "HU-check regions held to the truth's shift, curvature x10": {"smooth": 1e-2},
    "**HU-check regions held to the truth's shift (the fit)**": {},
}


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
    ap.add_argument("--phantom", type=Path, help="the Canon phantom pairs folder")
    ap.add_argument("--siemens", type=Path, help="the Siemens chest pair (B40f/ and B70f/)")
    ap.add_argument("--real", action="store_true",
                    help="the real-pair study (calibrate on one part, test on the other)")
    ap.add_argument("--variants", action="store_true", help="with --real: the fit's variants")
    ap.add_argument("--json", type=Path, help="with --real: write its figures here")
    ap.add_argument("--sim-train", type=Path)
    ap.add_argument("--sim-test", type=Path)
    args = ap.parse_args()
    if args.real:
        figures = real_study(real_cases(args.phantom, args.siemens), args.variants)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1, default=float) + "\n")
    elif args.phantom:
        phantom_study(args.phantom)
    if args.sim_train and args.sim_test:
        slices_study(args.sim_train, args.sim_test)


if __name__ == "__main__":
    main()
