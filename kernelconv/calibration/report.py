"""Pictures and tables of a calibration: fitted transfers, windows' MTF, noise spectra."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kernelconv.calibration.table import Calibration
from kernelconv.kernel_response import MTF_FREQ_LPCM, reference_system_mtf


def plot_calibration(cal: Calibration, path: Path) -> None:
    """Three panels: fitted transfers (points and the regularised fit), each kernel's MTF on
    the reference scanner, and each kernel's noise power spectrum on the pairs' flat tiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=110)
    ax = axes[0]
    for (s, t), fit in sorted(cal.fits.items()):
        pts = np.asarray(fit.points())
        ax.plot(pts[:, 0], pts[:, 1], label=f"{s} -> {t} ({fit.tiles} tiles)")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("spatial frequency (lp/cm)")
    ax.set_ylabel("fitted transfer H(f)")
    ax.set_title("Fitted transfers\n(least squares per ring)")
    ax.legend(fontsize=8)
    ax = axes[1]
    sys_mtf = reference_system_mtf(MTF_FREQ_LPCM)
    for row in cal.figures():
        spec = cal.table[row["kernel"]]
        ax.plot(MTF_FREQ_LPCM, spec.window(MTF_FREQ_LPCM) * sys_mtf,
                label=f"{row['kernel']}: MTF50 {row['mtf50_lpcm']:.2f}, "
                      f"MTF10 {row['mtf10_lpcm']:.2f} lp/cm")
    limits = [r["fitted_to_lpcm"] for r in cal.figures() if r["fitted_to_lpcm"]]
    if limits:
        ax.axvline(min(limits), color="grey", lw=0.8, ls="--")
        ax.text(min(limits) + 0.15, 0.02, "fitted range ends\n(beyond: held)", fontsize=7,
                color="grey", transform=ax.get_xaxis_transform())
    ax.axhline(0.5, color="grey", lw=0.5, ls=":")
    ax.axhline(0.1, color="grey", lw=0.5, ls=":")
    ax.set_xlim(0, 14)
    ax.set_xlabel("spatial frequency (lp/cm)")
    ax.set_ylabel("MTF (reference scanner)")
    ax.set_title(f"Kernels, anchored on {cal.anchor}")
    ax.legend(fontsize=8)
    ax = axes[2]
    drawn = set()
    for pn in cal.noise:
        for name, meas in ((pn.soft, pn.soft_noise), (pn.sharp, pn.sharp_noise)):
            label = f"{name}: SD {meas.sd:.1f} HU ({meas.tiles} tiles)"
            if label in drawn:  # the same kernel's tiles again, from another of its pairs
                continue
            drawn.add(label)
            f, nps = meas.radial()
            ax.plot(f, nps, label=label)
    ax.set_xlabel("spatial frequency (lp/cm)")
    ax.set_ylabel("NPS (HU$^2$ cm$^2$)")
    # two lines: one would run past the figure's right edge
    ax.set_title("Noise power spectra\n(flat tiles, detrended below ~1 lp/cm)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def figures_markdown(cal: Calibration) -> str:
    """The kernel figures as a markdown table (docs and reports)."""
    lines = [f"| kernel | MTF50 lp/cm | MTF10 lp/cm | MTF peak | noise / {cal.anchor} |",
             "|---|---|---|---|---|"]
    for r in cal.figures():
        nr = "-" if r["noise_ratio"] is None else f"{r['noise_ratio']:.2f}"
        m10 = f"{r['mtf10_lpcm']:.2f}" + (" (extrapolated)" if r["mtf10_extrapolated"] else "")
        lines.append(f"| {r['kernel']} | {r['mtf50_lpcm']:.2f} | {m10} | "
                     f"{r['peak']:.2f} | {nr} |")
    return "\n".join(lines)
