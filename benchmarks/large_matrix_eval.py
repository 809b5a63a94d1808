"""1024 x 1024 input at 0.30-0.40 mm pixels, through `convert`'s own path, once.

The bundled models were trained and evaluated on 512 x 512 slices of 0.49-0.98 mm pixels;
high-resolution reconstructions (1024 matrix, small pixels) are what a user may also bring.
This simulates paired 1024 x 1024 chests (the simulator with ``matrix=1024``) at the given
pixel sizes, converts them with the classical filter and the default model through
:func:`kernelconv.pipeline.run_convert` (files written, read back), and prints per direction
and pixel size: PSNR against the true target kernel (range 4095 HU), the HU check's verdict
and largest bias, the noise ratio against the target's, and seconds per slice.

    python benchmarks/large_matrix_eval.py --work /tmp/hires --pixel 0.30 --pixel 0.35 \\
        --pixel 0.40 --slices 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from kernelconv.dicom.dataset import decode_hu
from kernelconv.engines.select import EngineSpec, select_engine
from kernelconv.evaluation.metrics import psnr
from kernelconv.hu import HU_MAX, HU_MIN
from kernelconv.hu_check import lowpass
from kernelconv.kernel_response import load_response_table
from kernelconv.pipeline import ConvertOptions, run_convert
from kernelconv.sim.series import SimulationConfig, simulate

DIRECTIONS = [("B70f", "B30f"), ("B50f", "B30f"), ("B30f", "B70f")]


def _stack(folder: Path) -> dict[float, np.ndarray]:
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.suffix):
        ds = pydicom.dcmread(path)
        out[round(float(ds.ImagePositionPatient[2]), 2)] = decode_hu(ds, path)[1][0]
    return out


def _noise(hu: np.ndarray, px: float) -> float:
    """SD of the residual after the HU check's low-pass, in soft tissue (0..100 HU)."""
    lp = lowpass(hu, px)
    soft = (lp > 0.0) & (lp < 100.0)
    return float((hu - lp)[soft].std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--pixel", type=float, action="append", default=None)
    ap.add_argument("--slices", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    pixels = args.pixel or [0.35]
    rows: list[dict[str, Any]] = []
    for px in pixels:
        sim = args.work / f"sim-{px:.2f}"
        config = SimulationConfig(slices=args.slices, seed=4242, fov=px * 1024, matrix=1024)
        simulate(sim, config, load_response_table())
        patient = sim / "patient-000"
        truth = {k: _stack(patient / k) for k in ("B30f", "B50f", "B70f")}
        for method in ("filter", "model"):
            selected = select_engine(EngineSpec(method=method, device="cpu"))
            for src, dst in DIRECTIONS:
                out = args.work / f"out-{px:.2f}-{method}-{src}-{dst}"
                t0 = time.perf_counter()
                report = run_convert(patient / src, out, selected.factory, selected.domains,
                                     ConvertOptions(target=dst, max_bias=float("inf")),
                                     owner=selected.owner)
                seconds = (time.perf_counter() - t0) / args.slices
                [res] = report.results
                pred = _stack(out)
                zs = sorted(pred)
                ref = [np.clip(truth[dst][z], HU_MIN, HU_MAX) for z in zs]
                ident = [np.clip(truth[src][z], HU_MIN, HU_MAX) for z in zs]
                got = [np.clip(pred[z], HU_MIN, HU_MAX) for z in zs]
                check = res.hu_check or {}
                biases = {k: v for k, v in (check.get("bias_hu") or {}).items()
                          if k != "air" and v is not None}
                worst = max(biases.items(), key=lambda kv: abs(kv[1])) if biases else ("-", 0.0)
                rows.append({
                    "pixel_mm": px, "matrix": 1024, "method": method,
                    "direction": f"{src} -> {dst}", "slices": len(zs),
                    "psnr": float(np.mean([psnr(g, r) for g, r in zip(got, ref, strict=True)])),
                    "psnr_identity": float(np.mean([psnr(i, r) for i, r in
                                                    zip(ident, ref, strict=True)])),
                    "check_passed": bool(check.get("passed")), "worst_bias": worst,
                    "noise_vs_target": float(np.mean([_noise(g, px) / _noise(r, px)
                                                      for g, r in zip(got, ref, strict=True)])),
                    "seconds_per_slice": seconds, "status": res.status,
                })
                r = rows[-1]
                print(f"{px:.2f} mm  {method:6s} {r['direction']:13s} PSNR {r['psnr']:6.2f} "
                      f"(identity {r['psnr_identity']:6.2f})  check "
                      f"{'pass' if r['check_passed'] else 'FAIL'} worst {worst[0]} "
                      f"{worst[1]:+.2f} HU  noise/target {r['noise_vs_target']:.2f}  "
                      f"{seconds:.2f} s/slice", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
