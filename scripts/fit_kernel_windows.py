"""Fit the simulator's kernel windows to the kernel specification (analytic, a few seconds).

    python scripts/fit_kernel_windows.py

The predicted MTF is W(f) x detector aperture (0.6 mm box) x focal spot (0.32 mm FWHM) x the
phantom's fine-pixel box (0.342 mm), up to the detector band limit (14.18 lp/cm); the noise ratio is sqrt(integral f^2 W^2) relative to B30f.
Prints the window parameters that kernelconv/kernel_response.py holds and their predicted figures;
the figures that count are the ones `kernelconv qa` measures on reconstructed images.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from kernelconv.kernel_response import MTF_FREQ_LPCM, mtf_crossing, reference_system_mtf

F = MTF_FREQ_LPCM  # lp/cm, up to the detector band limit
# detector aperture, focal spot, and the box of the phantom's fine pixels (0.342 mm at the
# default 2x oversampling): everything between the object and the filter
APERTURE = reference_system_mtf(F)


def window(p: np.ndarray) -> np.ndarray:
    fc, n, gain, center, width, floor = p
    w = (1 + gain * np.exp(-(((F - center) / width) ** 2))) * ((1 - floor) / (1 + (F / fc) ** (2 * n)) + floor)
    return w / w[0]


def crossing(m: np.ndarray, level: float) -> float:
    return mtf_crossing(F, m, level)


def figures(w: np.ndarray) -> tuple[float, float, float]:
    m = w * APERTURE
    return crossing(m, 0.5), crossing(m, 0.1), float((m / m[0]).max())


def unimodality_penalty(w: np.ndarray) -> float:
    """How far W x aperture is from rising to one peak and then falling (real kernels do)."""
    m = w * APERTURE
    i = int(np.argmax(m))
    return float(np.clip(-np.diff(m[: i + 1]), 0, None).sum()
                 + np.clip(np.diff(m[i:]), 0, None).sum())


def noise(w: np.ndarray) -> float:
    return float(np.sqrt(np.trapezoid(F**2 * w**2, F)))


def main() -> None:
    b30 = np.array([3.8, 2.0, 0.0, 1.0, 1.0, 0.0])
    n0 = noise(window(b30))
    print("B30f", b30.tolist(), [round(v, 3) for v in figures(window(b30))])
    jobs = [("B50f", 5.3, 8.3, 1.03, 2.6, [5.9, 3, 0.1, 4, 2.5, 0.0]),
            ("B70f", 7.6, 11.0, 1.42, 6.5, [10.6, 4.5, 0.55, 4, 2.5, 0.05])]
    for name, t50, t10, tpk, tnoise, x0 in jobs:
        def objective(p: np.ndarray, t50=t50, t10=t10, tpk=tpk, tnoise=tnoise) -> float:
            if p[1] > 5 or p[1] < 1 or p[4] < 2.0 or not 0 <= p[5] <= 0.1 or p[2] < 0:
                return 1e3
            w = window(p)
            m50, m10, pk = figures(w)
            return 2 * (m50 - t50) ** 2 + (m10 - t10) ** 2 + 10 * (pk - tpk) ** 2 \
                + 0.2 * (noise(w) / n0 - tnoise) ** 2 + 20 * unimodality_penalty(w)

        best = None
        for trial in range(6):
            rng = np.random.default_rng(trial)
            x = np.array(x0) * (1 + 0.15 * rng.standard_normal(6)) if trial else np.array(x0)
            r = minimize(objective, x, method="Nelder-Mead",
                         options={"maxiter": 4000, "xatol": 1e-4, "fatol": 1e-8})
            if best is None or r.fun < best.fun:
                best = r
        assert best is not None
        w = window(best.x)
        print(name, [round(float(v), 4) for v in best.x],
              [round(v, 3) for v in figures(w)], "noise ratio", round(noise(w) / n0, 2),
              "non-unimodal", round(unimodality_penalty(w), 4))


if __name__ == "__main__":
    main()
