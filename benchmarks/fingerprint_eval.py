"""How well a series' noise tells its kernel (kernelconv.fingerprint), on simulated and real CT.

    python benchmarks/fingerprint_eval.py --work /tmp/fp --shared ../shared/data

1. Simulated chests (the simulator's kernels are known exactly): MTF50 of the fingerprint
   against the true window's, at several doses and pixel sizes.
   Beside it, the MTF50 measured on the body outline's air-tissue edge
   (kernelconv.fingerprint.edge_mtf, 4 slices).
2. Every real series the project has (the shared real pairs and archive): the fingerprint (MTF50 +- its bootstrap SD, tiles, misfit, validity) beside what the
   built-in response table says of the header's kernel, and the claim check's verdict.
3. Real pairs (the same raw data, two kernels): the ratio of the two series' fingerprints,
   each from its own images, against the pair's fitted transfer (least squares of one on the
   other, as `calibrate` fits it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pydicom

from kernelconv.calibration.fit import Accumulator, accumulate, solve
from kernelconv.dicom.dataset import decode_hu, pixel_spacing_mm
from kernelconv.dicom.discovery import discover
from kernelconv.fingerprint import MAX_SLICES, check_claim, edge_mtf, estimate
from kernelconv.kernel_response import builtin_table, load_response_table, mtf_figures
from kernelconv.pipeline import fingerprint_series

SIMS = [("dose 0.5, 0.68 mm", 0.5, 350.0), ("dose 1, 0.68 mm", 1.0, 350.0),
        ("dose 2, 0.68 mm", 2.0, 350.0), ("dose 1, 0.49 mm", 1.0, 250.0),
        ("dose 1, 0.94 mm", 1.0, 480.0)]


def _by_z(folder: Path) -> dict[float, np.ndarray]:
    out = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        ds = pydicom.dcmread(path)
        out[round(float(ds.ImagePositionPatient[2]), 2)] = decode_hu(ds, path)[1][0]
    return out


def simulated(work: Path, slices: int) -> None:
    from kernelconv.sim.series import SimulationConfig, simulate

    table = builtin_table()
    print("\n## 1. Simulated chests: fingerprint MTF50 against the true window's (lp/cm)\n")
    print("| case | kernel | true | fingerprint | +- | error | tiles | body-edge MTF50 |")
    print("|---|---|---|---|---|---|---|---|")
    errors = []
    for name, dose, fov in SIMS:
        root = work / f"sim-{dose}-{fov:.0f}"
        simulate(root, SimulationConfig(slices=slices, seed=91, dose=dose, fov=fov),
                 load_response_table())
        for kernel in ("B30f", "B50f", "B70f"):
            folder = root / "patient-000" / kernel
            ds = pydicom.dcmread(next(folder.iterdir()))
            stack = np.stack(list(_by_z(folder).values()))[:MAX_SLICES]
            fp = estimate(stack, pixel_spacing_mm(ds) or 0.684)
            true = mtf_figures(table[kernel])[0]
            edge = edge_mtf(stack[:4], pixel_spacing_mm(ds) or 0.684)
            edge50 = "-" if edge is None else f"{edge.mtf50:.2f} ({edge.mtf50 / true - 1:+.1%})"
            if fp.mtf50 is None:
                print(f"| {name} | {kernel} | {true:.2f} | - | - | {fp.reason} | {fp.tiles} "
                      f"| {edge50} |")
                continue
            err = fp.mtf50 / true - 1.0
            errors.append((name, err))
            print(f"| {name} | {kernel} | {true:.2f} | {fp.mtf50:.2f} | "
                  f"{fp.mtf50_sd or 0:.2f} | {err:+.1%} | {fp.tiles} | {edge50} |")
    fine = [e for n, e in errors if "0.94" not in n]
    print(f"\nRMS error {np.sqrt(np.mean(np.square(fine))):.1%} over the {len(fine)} cases at "
          f"0.49-0.68 mm (max {np.max(np.abs(fine)):.1%}).")


def real_series(roots: list[Path]) -> None:
    table = builtin_table()
    print("\n## 2. Real series: fingerprint and header\n")
    print("| series | header kernel | table MTF50 | fingerprint MTF50 | +- | tiles | misfit | "
          "verdict | body-edge MTF50 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for root in roots:
        for series in discover(root).series:
            if series.error:
                continue
            fp = fingerprint_series(series, series.kernel)
            first = [pydicom.dcmread(s.path) for s in series.slices[:4]]
            edge = edge_mtf(np.concatenate([decode_hu(ds, ref.path)[1] for ds, ref in
                                            zip(first, series.slices, strict=False)]),
                            pixel_spacing_mm(first[0]) or 0.684)
            kernel = (series.kernel or "").strip()
            spec = table.get(kernel)
            claimed = f"{mtf_figures(spec)[0]:.2f}" if spec else "not in table"
            verdict = fp.reason or ((check_claim(fp, kernel, spec) or "agrees") if spec
                                    else "estimate usable")
            label = str(Path(series.folder).relative_to(root.parent))
            m50 = "-" if fp.mtf50 is None else f"{fp.mtf50:.2f}"
            sd = "-" if fp.mtf50_sd is None else f"{fp.mtf50_sd:.2f}"
            misfit = "-" if fp.misfit is None else f"{fp.misfit:.3f}"
            e50 = "-" if edge is None else f"{edge.mtf50:.2f}"
            print(f"| {label} | {kernel or '-'} | {claimed} | {m50} | {sd} | {fp.tiles} | "
                  f"{misfit} | {verdict} | {e50} |")


def real_pairs(pairs: list[tuple[Path, Path]]) -> None:
    freqs = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
    print("\n## 3. Real pairs: ratio of the two fingerprints against the fitted transfer\n")
    print("| pair | | " + " | ".join(f"{f:g}" for f in freqs) + " lp/cm |")
    print("|---|---|" + "---|" * len(freqs))
    for soft_dir, sharp_dir in pairs:
        soft, sharp = _by_z(soft_dir), _by_z(sharp_dir)
        ds = pydicom.dcmread(next(soft_dir.iterdir()))
        px = pixel_spacing_mm(ds) or 0.684
        up, down = Accumulator(), Accumulator()
        for z in sorted(set(soft) & set(sharp)):
            accumulate(up, down, soft[z], sharp[z], px)
        fit = solve(up, soft_dir.name, sharp_dir.name)

        def pick(images: dict[float, np.ndarray]) -> np.ndarray:
            zs = sorted(images)
            idx = np.linspace(0, len(zs) - 1, min(MAX_SLICES, len(zs))).astype(int)
            return np.stack([images[zs[i]] for i in idx])

        a, b = estimate(pick(soft), px), estimate(pick(sharp), px)
        name = f"{soft_dir.parent.name}: {sharp_dir.name} / {soft_dir.name}"
        print(f"| {name} | fitted | " + " | ".join(f"{float(fit(f)):.2f}" for f in freqs)
              + " |")
        if a.response is None or b.response is None:
            print(f"| | fingerprints | no estimate ({a.reason or b.reason}) |")
            continue
        ratio = [b.response.window(np.array([f]))[0] / a.response.window(np.array([f]))[0]
                 for f in freqs]
        print("| | fingerprints | " + " | ".join(f"{r:.2f}" for r in ratio) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for simulated data")
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    ap.add_argument("--slices", type=int, default=4)
    args = ap.parse_args()
    simulated(args.work, args.slices)
    roots = [p for p in (args.shared / "real-ct-siemens-chest-pair",
                         args.shared / "real-ct-canon-phantom",
                         args.shared / "real-ct-archive") if p.is_dir()]
    real_series(roots)
    pairs = [(args.shared / "real-ct-siemens-chest-pair" / "Lung_Dx-A0002" / "B40f",
              args.shared / "real-ct-siemens-chest-pair" / "Lung_Dx-A0002" / "B70f")]
    pairs += [(args.shared / "real-ct-canon-phantom" / p / "FC13",
               args.shared / "real-ct-canon-phantom" / p / "FC51")
              for p in ("phantom1", "phantom2")]
    real_pairs([p for p in pairs if p[0].is_dir()])


if __name__ == "__main__":
    main()
