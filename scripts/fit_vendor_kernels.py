"""Fit a window to every vendor kernel's MTF50/MTF10 (kernelconv/vendor_kernels.py).

    python scripts/fit_vendor_kernels.py              # the WINDOWS literal
    python scripts/fit_vendor_kernels.py --kernel-map > examples/vendor-kernel-map.txt
    python scripts/fit_vendor_kernels.py --doc-table  # the table of docs/vendor-kernels.md

For each entry of ``VENDOR_KERNELS`` the MTF50/MTF10 targets (sourced, or derived by the
equivalence rule of that module) are met by a Butterworth window (cutoff, order) on the
reference scanner (kernel_response.mtf_figures). Prints the ``WINDOWS`` literal the module
holds; tests/test_vendor_kernels.py checks that every window still meets its targets.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from kernelconv.kernel_response import (
    KernelResponse,
    load_response_table,
    mtf_figures,
    predicted_noise_ratio,
)
from kernelconv.vendor_kernels import VENDOR_KERNELS, targets


def fit(t50: float, t10: float) -> tuple[float, float]:
    def objective(p: np.ndarray) -> float:
        if p[0] <= 0.5 or not 0.5 <= p[1] <= 6.0:
            return 1e3
        m50, m10, _ = mtf_figures(KernelResponse("x", cutoff=float(p[0]), order=float(p[1])))
        return (m50 - t50) ** 2 + (m10 - t10) ** 2

    starts = [(t50 * a, o) for a in (1.1, 1.4) for o in (1.0, 2.0, 3.0)]
    best = min((minimize(objective, s, method="Nelder-Mead",
                         options={"xatol": 1e-6, "fatol": 1e-12}) for s in starts),
               key=lambda r: r.fun)
    return round(float(best.x[0]), 4), round(float(best.x[1]), 4)


def kernel_map() -> None:
    """A --kernel-map file mapping each vendor kernel onto the nearest domain of the bundled
    models (B30f, B50f, B70f) by its equivalent Siemens number."""
    print("# Vendor kernels -> the bundled models' kernels, by the ESTIMATED equivalences of")
    print("# kernelconv/vendor_kernels.py (nearest of B30f, B50f, B70f by equivalent Siemens")
    print("# number). Estimates, not measurements: use with --kernel-map only after checking")
    print("# them on your own pairs (kernelconv calibrate, docs/calibration.md).")
    print("# Written by: python scripts/fit_vendor_kernels.py --kernel-map")
    for k in VENDOR_KERNELS:
        dom = min((30, "B30f"), (50, "B50f"), (70, "B70f"),
                  key=lambda d: abs(d[0] - k.siemens_number))[1]
        print(f"{k.name:<9}= {dom}   # {k.vendor} {k.use}, as Siemens {k.siemens_number:g}, "
              f"+-{k.uncertainty:.0%}")


def doc_table() -> None:
    """The markdown table of docs/vendor-kernels.md: each kernel's figures (the targets its window
    is fitted to), its noise relative to B30f for the same raw data as the windows predict (FBP
    noise model, kernel_response.predicted_noise_ratio), its uncertainty and basis."""
    table = load_response_table()
    print("| vendor | kernel | use | MTF50 | MTF10 | noise / B30f | uncertainty | basis |")
    print("|---|---|---|---|---|---|---|---|")
    for k in VENDOR_KERNELS:
        t50, t10 = targets(k)
        noise = predicted_noise_ratio("B30f", k.name, table)
        print(f"| {k.vendor} | {k.name} | {k.use} | {t50:.2f} | {t10:.2f} | {noise:.2f} | "
              f"±{k.uncertainty:.0%} | {k.basis} |")


def main() -> None:
    import sys

    if "--kernel-map" in sys.argv[1:]:
        kernel_map()
        return
    if "--doc-table" in sys.argv[1:]:
        doc_table()
        return
    print("WINDOWS: dict[str, tuple[float, float]] = {")
    for k in VENDOR_KERNELS:
        t50, t10 = targets(k)
        print(f"    {k.name!r}: {fit(t50, t10)},")
    print("}")


if __name__ == "__main__":
    main()
