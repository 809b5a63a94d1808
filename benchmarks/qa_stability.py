"""How stable are `kernelconv qa`'s figures? Run-to-run spread against the number of slices.

Simulates the QA phantom with several noise seeds, then measures MTF50, MTF10, peak MTF and
noise on disjoint groups of 1, 2, 4, 8 and 16 consecutive slices; prints, per kernel and slice
count, the mean and the standard deviation across groups (the run-to-run spread a user sees
when measuring a series of that many slices), and the spec's tolerance beside it.

    python benchmarks/qa_stability.py --seeds 6 --slices 16 --work /tmp/qa-stability
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kernelconv.dicom.dataset import read_hu_slices
from kernelconv.dicom.discovery import discover
from kernelconv.evaluation.qa import measure_images
from kernelconv.kernel_response import load_response_table
from kernelconv.sim.series import SimulationConfig, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qa-stability"))
    parser.add_argument("--json", type=Path, help="Write the figures here.")
    args = parser.parse_args()
    table = load_response_table()
    groups: dict[tuple[str, int], list[dict[str, float]]] = {}
    for seed in range(args.seeds):
        folder = args.work / f"seed-{seed}"
        simulate(folder, SimulationConfig(slices=args.slices, phantom="qa", seed=100 + seed),
                 table)
        for series in discover(folder).series:
            images, first = read_hu_slices([s.path for s in series.slices])
            n = 1
            while n <= len(images):
                for start in range(0, len(images) - n + 1, n):
                    r = measure_images(series.kernel or "?", series.folder,
                                       images[start:start + n], first)
                    groups.setdefault((r.kernel, n), []).append(
                        {"mtf50": r.mtf.mtf50, "mtf10": r.mtf.mtf10, "peak": r.mtf.peak,
                         "noise_sd": r.noise_sd})
                n *= 2
    rows = []
    print(f"{'kernel':6} {'slices':>6} {'groups':>6}  {'MTF50 mean+-SD':>16} "
          f"{'MTF10 mean+-SD':>16} {'peak mean+-SD':>15}  spec tol MTF50/MTF10")
    for (kernel, n), items in sorted(groups.items()):
        spec = table.get(kernel)
        row: dict[str, object] = {"kernel": kernel, "slices": n, "groups": len(items)}
        for key in ("mtf50", "mtf10", "peak", "noise_sd"):
            values = np.array([i[key] for i in items])
            row[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1))
                        if len(values) > 1 else float("nan"),
                        "min": float(values.min()), "max": float(values.max())}
        rows.append(row)
        tol = f"{spec.mtf50[1]:.1f}/{spec.mtf10[1]:.1f}" if spec and spec.mtf50 and \
            spec.mtf10 else "-"
        m50, m10, pk = row["mtf50"], row["mtf10"], row["peak"]
        print(f"{kernel:6} {n:6d} {len(items):6d}  {m50['mean']:7.2f} +- {m50['sd']:5.2f} "
              f"{m10['mean']:7.2f} +- {m10['sd']:5.2f} {pk['mean']:6.3f} +- {pk['sd']:5.3f}"
              f"  {tol}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
