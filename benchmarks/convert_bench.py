"""Model-only vs end-to-end conversion speed on a 512 x 512 series, on this machine.

    python benchmarks/convert_bench.py                 # 64 slices, paper-size generator, CPU
    python benchmarks/convert_bench.py --slices 16 --device cuda --batch-size 16

Model-only: the engine converting slices already decoded in memory (what the network costs).
End-to-end: `kernelconv convert`'s pipeline on the DICOM series (read, decode, convert, build
and write derived files, overlapped). Prints slices/s of both, their ratio (the pipeline's
overhead; the target on CPU is <= 1.15), and the model's achieved GFLOP/s. The generator has
random weights: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import copy
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
from common import conv_flops, matmul_peak, random_model
from pydicom.uid import generate_uid

from kernelconv.bundled import example_series_dir
from kernelconv.dicom.dataset import decode_hu
from kernelconv.dicom.discovery import discover
from kernelconv.engines.torch_engine import TorchEngine
from kernelconv.pipeline import ConvertOptions, run_convert


def make_series(folder: Path, n: int) -> None:
    src_dir = example_series_dir()
    assert src_dir is not None, "example data not installed"
    sources = sorted(src_dir.iterdir())
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    for i in range(n):
        ds = copy.deepcopy(pydicom.dcmread(sources[i % len(sources)]))
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [-175.0, -175.0, -1.0 * i]
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"IM{i:04d}", enforce_file_format=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--conv-dim", type=int, default=64)
    ap.add_argument("--n-res", type=int, default=6)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kc-bench-"))
    model, gen = random_model(work / "bench.safetensors", args.conv_dim, args.n_res)
    flops = conv_flops(gen, 512, 512)
    series = work / "in"
    make_series(series, args.slices)

    engine = TorchEngine(model, args.device, args.precision)
    found = discover(series)
    hu = np.concatenate([decode_hu(pydicom.dcmread(s.path), s.path)[1]
                         for s in found.series[0].slices])
    engine.convert(hu[: args.batch_size], "B70f", "B30f")  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(hu), args.batch_size):
        engine.convert(hu[i:i + args.batch_size], "B70f", "B30f")
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    model_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = run_convert(series, work / "out", lambda: engine, tuple(engine.domains),
                         ConvertOptions(target="B30f", batch_size=args.batch_size))
    e2e_s = time.perf_counter() - t0
    assert report.results[0].status == "converted", report.results[0].reason

    n = args.slices
    peak = matmul_peak(engine.device)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"torch threads, torch {torch.__version__}, device {engine.device}")
    print(f"generator: conv_dim {args.conv_dim}, n_res {args.n_res}: "
          f"{flops / 1e9:.1f} GFLOP per 512x512 slice")
    print(f"series: {n} slices 512x512, batch size {args.batch_size}, {args.precision}")
    print(f"model-only : {model_s:8.2f} s  {n / model_s:8.3f} slices/s  "
          f"{model_s / n:7.3f} s/slice  {flops * n / model_s / 1e9:8.1f} GFLOP/s")
    print(f"end-to-end : {e2e_s:8.2f} s  {n / e2e_s:8.3f} slices/s  {e2e_s / n:7.3f} s/slice")
    print(f"ratio end-to-end / model-only: {e2e_s / model_s:.3f}")
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s; model achieves "
          f"{flops * n / model_s / 1e9 / peak:.0%} of it")


if __name__ == "__main__":
    main()
