"""Noise texture of soft -> sharp conversions: does a method restore the sharp kernel's NPS?

An L1-trained converter cannot invent noise that the soft source does not carry, so soft ->
sharp it reaches only part of the sharp kernel's noise (the paper's argument for adversarial
training). This benchmark measures, on held-out simulated data with the simulator's noiseless
truth (noise = image - truth, in the eroded soft-tissue region of the truth), per direction and
method:

  PSNR          against the true target kernel (dB, HU clipped to [-1024, 3071], range 4095)
  noise ratio   noise SD of the result / of the true target
  NPS corr      Pearson correlation of the radial NPS curves (shape; 1 = same shape)
  f_mean        NPS-weighted mean frequency, result / true target (lp/cm)
  LAA-950       result - true target, percentage points (lung of the truth)
  band ratios   NPS power of the result / the true target's in thirds of the band up to
                Nyquist (low / mid / high): which frequencies are missing or added

and draws the radial NPS curves of every method beside the true target's (--png).

    python benchmarks/texture_eval.py --data data/heldout/sim-reference \\
        --model resim-fr-v1 --model runs/u13/models/X.safetensors --png nps.png

--all-directions adds sharp -> soft (its noise SD against the noiseless truth, where the
evaluation of model_eval.py measures noise as the residual after a low-pass instead);
--edge-margin-mm 3 keeps the noise region 3 mm away from the soft tissue's edges, which tells
an error at edges (over- or under-sharpened boundaries) from a change of texture.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from model_eval import Identity, paired_scans
from scipy.ndimage import binary_erosion

from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.engines.select import EngineSpec, select_engine
from kernelconv.evaluation.evaluate import (
    _correlation,
    _mean_freq,
    radial_nps,
    roi_masks,
)
from kernelconv.evaluation.metrics import laa950, psnr

SOFT_TO_SHARP = [("B30f", "B50f"), ("B30f", "B70f"), ("B50f", "B70f")]
SHARP_TO_SOFT = [("B70f", "B30f"), ("B70f", "B50f"), ("B50f", "B30f")]


def load_scans(folder: Path) -> list[tuple[dict[str, tuple[np.ndarray, float]],
                                            np.ndarray, np.ndarray]]:
    """Each simulated scan under ``folder`` (a folder holding truth.npz) as (its series by
    kernel, noiseless HU, lung mask), slices sorted by position in all three."""
    out = []
    for path in sorted(folder.rglob("truth.npz")):
        scans = paired_scans(path.parent)
        if len(scans) != 1:
            raise SystemExit(f"{path.parent}: expected one simulated scan, found {len(scans)}")
        with np.load(path) as data:
            order = np.argsort(data["z"])
            hu, lung = data["hu"][order].astype(np.float64), data["lung"][order].astype(bool)
        if any(len(s) != len(hu) for s, _ in scans[0].values()):
            raise SystemExit(f"{path.parent}: truth and series differ in slice count")
        out.append((scans[0], hu, lung))
    if not out:
        raise SystemExit(f"{folder}: no truth.npz (simulate it with kernelconv simulate)")
    return out


def measure(engine: Any, scans: list[tuple[dict[str, tuple[np.ndarray, float]],
                                           np.ndarray, np.ndarray]],
            margin_mm: float = 0.0,
            directions: list[tuple[str, str]] = SOFT_TO_SHARP) -> dict[str, dict[str, Any]]:
    """Per direction: PSNR, noise SD ratio and the mean radial NPS of result and target;
    with ``margin_mm`` the soft-tissue region keeps that far from its edges (edge errors,
    such as over-sharpened boundaries, then stay out of the noise)."""
    acc: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for scan, truth, lung in scans:
        for src, dst in directions:
            (x, px), (ref, _) = scan[src], scan[dst]
            pred = np.clip(engine.convert(np.clip(x, -1024, 3071), src, dst, px), -1024, 3071)
            bins = np.arange(0.0, 5.0 / px, 0.1)
            name = f"{src} -> {dst}"
            acc[name]["freq"] = [bins]
            for p, r, t, lg in zip(pred, ref, truth, lung, strict=True):
                r = np.clip(r.astype(np.float64), -1024, 3071)
                p = p.astype(np.float64)
                acc[name]["psnr"].append(psnr(p, r))
                if lg.sum() > 500:
                    acc[name]["laa"].append(laa950(p, lg) - laa950(r, lg))
                soft = roi_masks(r, t, lg)[0]["soft tissue"]
                if margin_mm > 0:
                    soft = binary_erosion(soft, iterations=max(1, round(margin_mm / px)))
                if soft.sum() < 100:
                    continue
                noise_p, noise_r = p - t, r - t
                acc[name]["sd_pred"].append(float(noise_p[soft].std()))
                acc[name]["sd_ref"].append(float(noise_r[soft].std()))
                acc[name]["nps_pred"].append(radial_nps(noise_p, soft, px, bins))
                acc[name]["nps_ref"].append(radial_nps(noise_r, soft, px, bins))
    out: dict[str, dict[str, Any]] = {}
    for name, a in acc.items():
        freq = a["freq"][0]
        pred, ref = np.nanmean(a["nps_pred"], axis=0), np.nanmean(a["nps_ref"], axis=0)
        thirds = np.array_split(np.arange(1, len(freq)), 3)
        out[name] = {
            "psnr": float(np.mean(a["psnr"])),
            "noise ratio": float(np.mean(a["sd_pred"]) / np.mean(a["sd_ref"])),
            "laa": float(np.mean(a["laa"])) if a["laa"] else float("nan"),
            "nps corr": _correlation(pred, ref),
            "f_mean pred": _mean_freq(freq, np.nan_to_num(pred)),
            "f_mean ref": _mean_freq(freq, np.nan_to_num(ref)),
            "band ratios": [float(np.nansum(pred[b]) / np.nansum(ref[b])) for b in thirds],
            "freq": freq, "nps pred": pred, "nps ref": ref,
        }
    return out


class MissingNoise:
    """A bound, not a method: ``base``'s result plus Gaussian noise drawn independently of the
    image with exactly the NPS the base result lacks against the true target (measured on the
    same held-out slices, so it is an oracle), inside the body (low-passed result above -900
    HU). Any converter that restores the target's NPS from the soft image alone must add at
    least this much variance that is independent of the true noise, so the PSNR this reaches
    is the best such a converter can have."""

    def __init__(self, base: Any, missing: dict[str, tuple[np.ndarray, np.ndarray]],
                 seed: int = 0):
        self.base, self.missing = base, missing
        self.rng = np.random.default_rng(seed)

    def convert(self, hu: np.ndarray, source: str, target: str, pixel_mm: float) -> np.ndarray:
        from scipy import ndimage

        out = np.asarray(self.base.convert(hu, source, target, pixel_mm), dtype=np.float64)
        freq, nps = self.missing[f"{source} -> {target}"]
        h, w = out.shape[-2:]
        f = np.hypot(np.fft.fftfreq(h, d=pixel_mm)[:, None],
                     np.fft.fftfreq(w, d=pixel_mm)[None, :]) * 10.0  # lp/cm
        amplitude = np.sqrt(np.interp(f, freq, nps, right=nps[-1]) / pixel_mm ** 2)
        for sl in out.reshape(-1, h, w):
            noise = np.fft.ifft2(amplitude * np.fft.fft2(self.rng.standard_normal((h, w)))).real
            sl += np.where(ndimage.gaussian_filter(sl, 2.0) > -900.0, noise, 0.0)
        return out.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True,
                    help="simulated paired folder with truth.npz (kernelconv simulate)")
    ap.add_argument("--model", action="append", default=[], help="model NAME|PATH (repeatable)")
    ap.add_argument("--png", type=Path, help="draw the NPS curves here")
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--no-bound", action="store_true",
                    help="leave out the oracle bound 'filter + missing noise'")
    ap.add_argument("--all-directions", action="store_true",
                    help="also measure sharp -> soft (noise SD against the noiseless truth)")
    ap.add_argument("--edge-margin-mm", type=float, default=0.0,
                    help="measure noise only this far inside the soft tissue's edges "
                         "(default 0: the whole region)")
    args = ap.parse_args()
    scans = load_scans(args.data)
    methods: dict[str, Any] = {"identity": Identity(), "filter": FilterEngine()}
    for m in args.model:
        selected = select_engine(EngineSpec(model=m, device="cpu"))
        methods[selected.info.name if selected.info else m] = selected.factory()
    margin = args.edge_margin_mm
    directions = SOFT_TO_SHARP + (SHARP_TO_SOFT if args.all_directions else [])
    results = {label: measure(engine, scans, margin, directions)
               for label, engine in methods.items()}
    if not args.no_bound:
        f = results["filter"]
        missing = {n: (d["freq"], np.clip(np.nan_to_num(d["nps ref"] - d["nps pred"]), 0, None))
                   for n, d in f.items()}
        results["filter + missing noise (oracle bound)"] = measure(
            MissingNoise(methods["filter"], missing), scans, margin, directions)
    where = f", soft tissue at least {margin:g} mm inside its edges" if margin > 0 else ""
    lines = [f"### Soft -> sharp noise texture on {args.data} "
             f"({sum(len(t) for _, t, _ in scans)} slices{where})", "",
             "| method | direction | PSNR dB | noise ratio | LAA-950 diff pp | NPS corr | f_mean result / target "
             "lp/cm | NPS power low / mid / high band, result / target |",
             "|---|---|---|---|---|---|---|---|"]
    for label, res in results.items():
        for name, d in res.items():
            lo, mid, hi = d["band ratios"]
            lines.append(f"| {label} | {name} | {d['psnr']:.2f} | {d['noise ratio']:.2f} | "
                         f"{d['laa']:.2f} | {d['nps corr']:.3f} | {d['f_mean pred']:.2f} / {d['f_mean ref']:.2f}"
                         f" | {lo:.2f} / {mid:.2f} / {hi:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(directions), figsize=(5 * len(directions), 4))
        for ax, (src, dst) in zip(axes, directions, strict=True):
            name = f"{src} -> {dst}"
            first = next(iter(results.values()))[name]
            ax.plot(first["freq"], first["nps ref"], "k", lw=2.5, label=f"true {dst}")
            for label, res in results.items():
                ax.plot(res[name]["freq"], res[name]["nps pred"], lw=1.2, label=label)
            ax.set_title(name)
            ax.set_xlabel("spatial frequency (lp/cm)")
            ax.set_ylabel("NPS (HU² mm²)")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
