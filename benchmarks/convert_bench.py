"""Model-only vs end-to-end conversion speed on a 512 x 512 series, on this machine.

    python benchmarks/convert_bench.py                 # 64 slices, paper-size generator, CPU
    python benchmarks/convert_bench.py --slices 16 --device cuda --batch-size 16
    python benchmarks/convert_bench.py --runs filter,default --slices 99   # ratios in one run
    python benchmarks/convert_bench.py --device cuda --precision bf16 --batch-size 32 \
        --slices 300 --runs paper,default,filter --cli --json e2e.json      # the GPU suite

Model-only: the engine converting slices already decoded in memory (what the network costs).
End-to-end: `kernelconv convert`'s pipeline on the DICOM series (read, decode, convert, build
and write derived files, overlapped). Prints slices/s of both, their ratio (the pipeline's
overhead; the target on CPU is <= 1.15), and the model's achieved GFLOP/s. The generator has
random weights: speed does not depend on the weights.

--runs: what converts, each on the same series in this one process: ``paper`` (the paper-size
generator of --conv-dim/--n-res with random weights; the default), ``default`` or a model
NAME|PATH, ``filter`` (the MTF-ratio filter on --device); ``+onnx`` after a model runs it with
ONNX Runtime (fp32), ``@cpu`` after any runs it on the CPU. Speed runs lift the HU limit
(--max-bias inf: random weights move mean HU); the check itself still runs and is timed.
--cli also times the `kernelconv convert` command on the series (a fresh process: start-up
and model loading included). --json FILE writes every figure after each run.
"""

from __future__ import annotations

import argparse
import copy
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from common import conv_flops, machine_info, peaks, random_model, sync, write_json
from pydicom.uid import generate_uid

from kernelconv.bundled import example_series_dir
from kernelconv.dicom.dataset import decode_hu
from kernelconv.dicom.discovery import discover
from kernelconv.engines import Engine
from kernelconv.engines.select import filter_engine
from kernelconv.engines.torch_engine import TorchEngine
from kernelconv.modelfile import resolve_model
from kernelconv.nets import Generator, GeneratorConfig
from kernelconv.pipeline import ConvertOptions, run_convert

SOURCE, TARGET = "B70f", "B30f"


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


class Run:
    """One thing to time: its engine, the model file a `kernelconv convert` command names,
    and the network's FLOPs per slice (None for the filter)."""

    def __init__(self, spec: str, args: argparse.Namespace, work: Path) -> None:
        self.spec = spec
        what, _, device = spec.partition("@")
        what, _, backend = what.partition("+")
        self.device = device or args.device
        self.backend = backend or "torch"
        self.precision = "fp32"
        self.model: Path | None = None
        self.flops: float | None = None
        self.label = ""
        if what == "filter":
            self.method = "filter"
            return
        if self.backend == "torch":
            self.precision = args.precision
        self.method = "model"
        if what == "paper":
            self.model, _ = random_model(work / "bench.safetensors", args.conv_dim, args.n_res)
            self.label = f"conv_dim {args.conv_dim}, n_res {args.n_res}: "
        else:
            self.model = resolve_model(None if what == "default" else what)

    def engine(self) -> Engine:
        if self.method == "filter":
            return filter_engine(None, self.device)
        assert self.model is not None
        if self.backend == "onnx":
            from kernelconv.engines.onnx_engine import OnnxEngine

            engine: Any = OnnxEngine(self.model, self.device)
            want_cuda = self.device.startswith("cuda")
            if want_cuda and engine.providers[0] != "CUDAExecutionProvider":
                raise RuntimeError(f"ONNX Runtime fell back to {engine.providers} (its CUDA "
                                   "execution provider did not load)")
        else:
            engine = TorchEngine(self.model, self.device, self.precision)
        config = GeneratorConfig.from_dict(engine.info.arch_args)
        self.flops = conv_flops(Generator(config), 512, 512)
        return engine  # type: ignore[no-any-return]

    def cli(self, series: Path, out: Path, batch_size: int) -> list[str]:
        cmd = [sys.executable, "-m", "kernelconv", "convert", str(series), str(out), "--to",
               TARGET, "--device", self.device, "--batch-size", str(batch_size),
               "--max-bias", "inf"]
        if self.method == "filter":
            return cmd + ["--method", "filter"]
        return cmd + ["--model", str(self.model), "--backend", self.backend,
                      "--precision", self.precision]


def device_of(engine: Engine) -> torch.device:
    dev = getattr(engine, "device", "cpu")
    return dev if isinstance(dev, torch.device) else torch.device(str(dev))


def measure(run: Run, series: Path, hu: np.ndarray, work: Path, args: argparse.Namespace,
            pk: dict[str, Any]) -> dict[str, Any]:
    """Model-only and end-to-end seconds of one run (and the command's, with --cli)."""
    engine = run.engine()
    dev = device_of(engine)
    engine.convert(hu[: args.batch_size], SOURCE, TARGET)  # warm-up
    sync(dev)
    t0 = time.perf_counter()
    for i in range(0, len(hu), args.batch_size):
        engine.convert(hu[i:i + args.batch_size], SOURCE, TARGET)
    sync(dev)
    model_s = time.perf_counter() - t0

    out = work / f"out-{run.spec.replace('@', '-').replace('+', '-')}"
    t0 = time.perf_counter()
    report = run_convert(series, out, lambda: engine, tuple(engine.domains),
                         ConvertOptions(target=TARGET, batch_size=args.batch_size,
                                        max_bias=float("inf")))
    e2e_s = time.perf_counter() - t0
    result = report.results[0]
    if result.status != "converted":
        raise RuntimeError(f"end to end: {result.status}: {result.reason}")
    n = len(hu)
    row: dict[str, Any] = {
        "run": run.spec, "method": run.method, "backend": run.backend, "device": str(dev),
        "precision": run.precision, "engine": engine.method_id, "batch_size": args.batch_size,
        "slices": n, "model_only_s": model_s, "model_only_slices_per_s": n / model_s,
        "e2e_s": e2e_s, "e2e_slices_per_s": n / e2e_s,
        "ratio_e2e_to_model_time": e2e_s / model_s,
        "ratio_e2e_to_model_throughput": model_s / e2e_s}
    if run.flops is not None:
        gflops = run.flops * n / model_s / 1e9
        row.update(gflop_per_slice=run.flops / 1e9, model_gflops=gflops,
                   frac_fp32_peak=gflops / pk["fp32_matmul_gflops"])
        if pk.get("bf16_matmul_gflops"):
            row["frac_bf16_peak"] = gflops / pk["bf16_matmul_gflops"]
    if args.cli:
        t0 = time.perf_counter()
        proc = subprocess.run(run.cli(series, work / f"{out.name}-cli", args.batch_size),
                              capture_output=True, text=True)
        row["cli_wall_s"] = time.perf_counter() - t0
        row["cli_exit_code"] = proc.returncode
        if proc.returncode == 0:
            row["cli_slices_per_s"] = n / row["cli_wall_s"]
        else:
            row["cli_error"] = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--conv-dim", type=int, default=64)
    ap.add_argument("--n-res", type=int, default=6)
    ap.add_argument("--runs", default="paper", help="comma list: paper, default, a model "
                    "NAME|PATH, filter; +onnx after a model, @cpu after any (see above)")
    ap.add_argument("--series", type=Path, help="the series folder: made there if missing, "
                    "else reused (default: a temporary folder)")
    ap.add_argument("--cli", action="store_true", help="also time `kernelconv convert`")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kc-bench-"))
    series = args.series or work / "in"
    if not series.is_dir():
        make_series(series, args.slices)
    found = discover(series)
    hu = np.concatenate([decode_hu(pydicom.dcmread(s.path), s.path)[1]
                         for s in found.series[0].slices])[: args.slices]
    dev = torch.device("cuda" if args.device.startswith("cuda") else "cpu")
    pk = peaks(dev)
    doc: dict[str, Any] = {"benchmark": "convert_bench", "status": "running",
                           "args": vars(args), "machine": machine_info(dev), "peaks": pk,
                           "series": {"slices": len(hu), "size": list(hu.shape[1:]),
                                      "source": SOURCE, "target": TARGET}, "runs": []}
    write_json(args.json, doc)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"torch threads, torch {torch.__version__}, device {args.device}")
    print(f"series: {len(hu)} slices 512x512, batch size {args.batch_size}, {args.precision}")
    failed = 0
    for spec in args.runs.split(","):
        try:
            run = Run(spec, args, work)
            row = measure(run, series, hu, work, args, pk)
        except Exception as exc:  # noqa: BLE001 - record why, go on with the other runs
            failed += 1
            row = {"run": spec, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            print(f"{spec}: failed: {row['error']}", flush=True)
            doc["runs"].append(row)
            write_json(args.json, doc)
            continue
        doc["runs"].append(row)
        write_json(args.json, doc)
        print(f"\n{spec} ({row['engine']}, {row['device']}, {row['precision']}):")
        if "gflop_per_slice" in row:
            print(f"generator: {run.label}{row['gflop_per_slice']:.1f} GFLOP per 512x512 slice")
        n, model_s, e2e_s = row["slices"], row["model_only_s"], row["e2e_s"]
        rate = f"  {row['model_gflops']:8.1f} GFLOP/s" if "model_gflops" in row else ""
        print(f"model-only : {model_s:8.2f} s  {n / model_s:8.3f} slices/s  "
              f"{model_s / n:7.3f} s/slice{rate}")
        print(f"end-to-end : {e2e_s:8.2f} s  {n / e2e_s:8.3f} slices/s  {e2e_s / n:7.3f} s/slice")
        print(f"ratio end-to-end / model-only: {e2e_s / model_s:.3f}")
        print(f"throughput end-to-end / model-only: {model_s / e2e_s:.3f}")
        if "cli_wall_s" in row:
            print(f"kernelconv convert: {row['cli_wall_s']:.2f} s wall with start-up"
                  + (f" (exit {row['cli_exit_code']}: {row.get('cli_error')})"
                     if row["cli_exit_code"] else ""))
        if "frac_fp32_peak" in row:
            print(f"fp32 matmul peak: {pk['fp32_matmul_gflops']:.1f} GFLOP/s; model achieves "
                  f"{row['frac_fp32_peak']:.0%} of it" +
                  (f", {row['frac_bf16_peak']:.0%} of the bf16 peak "
                   f"{pk['bf16_matmul_gflops']:.0f}" if "frac_bf16_peak" in row else ""))
    doc["status"] = "ok" if not failed else "failed"
    write_json(args.json, doc)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
