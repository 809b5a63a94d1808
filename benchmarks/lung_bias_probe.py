"""How much a conversion moves lung HU on real images, measured several ways.

    python benchmarks/lung_bias_probe.py ../shared/data/real-ct-canon-phantom/phantom1/FC51 \\
        --source B70f --target B30f

Converts the series with the default model and with the filter (in memory, as `convert`
does) and prints, per method, the lung difference output - input:

  low-pass   Gaussian low-pass (sigma 2.5 mm, as the HU check) of both, averaged over a lung
             mask taken from the low-passed input (below -400 HU inside the body, eroded 4 mm
             or not); this is what "a kernel change must not move local mean HU" means
  raw        plain pixel means over a mask thresholded on the RAW (noisy) input: biased by
             selection (pixels picked because their noise is low come out higher after any
             smoothing, regression to the mean), shown to tell the two apart
  HU check   what kernelconv's per-series check reports (None: not judged)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pydicom

from kernelconv.dicom.dataset import decode_hu
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.engines.select import EngineSpec, select_engine
from kernelconv.hu_check import ERODE_MM, HuCheck, _body, _erode, lowpass
from kernelconv.kernel_response import predicted_noise_ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("series", type=Path)
    ap.add_argument("--source", default="B70f")
    ap.add_argument("--target", default="B30f")
    args = ap.parse_args()
    files = sorted(args.series.iterdir())
    x = np.clip(np.concatenate([decode_hu(pydicom.dcmread(f), f)[1] for f in files]),
                -1024, 3071)
    px = float(pydicom.dcmread(files[0]).PixelSpacing[0])
    lp_in = lowpass(x, px)
    engines = {"default model": select_engine(EngineSpec(device="cpu")).factory(),
               "filter": FilterEngine()}
    for name, engine in engines.items():
        y = engine.convert(x, args.source, args.target, px)
        lp_out = lowpass(np.clip(y, -1024, 3071), px)
        rows = []
        for erode in (0.0, ERODE_MM):
            diffs = []
            for i in range(len(x)):
                m = _erode((lp_in[i] < -400) & _body(lp_in[i]), int(round(erode / px)))
                diffs.append(float((lp_out[i] - lp_in[i])[m].mean()))
            rows.append(f"low-pass (erode {erode:g} mm) {np.mean(diffs):+.1f}")
        raw = [float((y[i] - x[i])[(x[i] < -900) & _body(lp_in[i])].mean()) for i in range(len(x))]
        rows.append(f"raw, mask raw input < -900 HU {np.mean(raw):+.1f}")
        check = HuCheck(expected_noise_ratio=predicted_noise_ratio(
            args.source, args.target, highpass_sigma_mm=2.5))
        check.add(x, y, px)
        rows.append(f"HU check {check.bias_hu}")
        print(f"{name}: " + "; ".join(rows))


if __name__ == "__main__":
    main()
