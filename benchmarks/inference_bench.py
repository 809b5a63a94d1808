"""Inference paths side by side on this machine: slices/s, ratios, GFLOP/s, and accuracy.

    python benchmarks/inference_bench.py                     # paper-size random weights, CPU
    python benchmarks/inference_bench.py --model default     # the default model (+ accuracy)
    python benchmarks/inference_bench.py --int8 --bf16       # also the reduced-precision paths
    python benchmarks/inference_bench.py --device cuda --batch-sizes 1,2,4,8,16,32
    python benchmarks/inference_bench.py --device cuda --no-onnx --net-sweep --compile \
        --cuda-graphs --json inference.json       # the GPU suite's model-only step

Paths (512 x 512 slices already in memory, model only):
  authors-loop  torch fp32, one slice per forward, NCHW, no_grad: how the reference code runs
  torch         kernelconv's TorchEngine, inference_mode: on CUDA batched and channels_last
                (fp32, and bf16/fp16 autocast with the fp32 head); on the CPU one slice per
                forward pass in NCHW (measured fastest there)
  onnx          ONNX Runtime fp32, batched (CUDA provider on a GPU with onnxruntime-gpu)
  onnx-int8     (--int8) ONNX Runtime static int8, QDQ per-channel, calibrated on simulated
                slices of another seed; first and last convolution fp32
  torch-bf16    (--bf16, CPU) bf16 autocast for everything but the output head, batched,
                channels_last

With a trained --model, reduced-precision paths are compared with torch fp32 on held-out
simulated patients (seed 9001, not the calibration seed; --input: the slices of a DICOM
folder instead): mean and max |dHU| over the slices. With random weights (no --model) only
speed is meaningful.

--net-sweep times the network alone on slices already on the device (no host work: what the
GPU can do), for each precision, memory format and batch size, with the fraction of the
fp32 and bf16 matrix-multiply rates measured in the same run; --compile (torch.compile) and
--cuda-graphs (one captured forward pass replayed) re-time its fastest reduced-precision
point. --json FILE writes every figure, after each one (a run stopped early keeps them).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import conv_flops, machine_info, peaks, random_model, sync, write_json

from kernelconv.cli import main as cli
from kernelconv.dicom.dataset import read_hu_slices
from kernelconv.engines import one_hot
from kernelconv.engines.torch_engine import TorchEngine, run_generator
from kernelconv.hu import HU_MAX, HU_MIN, hu_to_unit, network_input, unit_to_hu
from kernelconv.modelfile import resolve_model
from kernelconv.nets import Generator


def simulated_slices(root: Path, seed: int, slices: int) -> dict[str, np.ndarray]:
    """{kernel: (slices, 512, 512) HU} of one simulated patient."""
    with contextlib.suppress(SystemExit):
        cli(["simulate", str(root), "--patients", "1", "--slices", str(slices), "--seed",
             str(seed)])
    out = {}
    for kernel_dir in sorted((root / "patient-000").iterdir()):
        if kernel_dir.is_dir():
            files = sorted(kernel_dir.iterdir())
            out[kernel_dir.name] = np.stack(read_hu_slices(files)[0])
    return out


def timed(fn: Callable[[np.ndarray], np.ndarray], hu: np.ndarray, batch: int,
          sync: Callable[[], None] = lambda: None) -> tuple[float, np.ndarray]:
    """Seconds per slice converting ``hu`` in batches (after one warm-up batch)."""
    fn(hu[:batch])
    sync()
    outs = []
    t0 = time.perf_counter()
    for i in range(0, len(hu), batch):
        outs.append(fn(hu[i:i + batch]))
    sync()
    return (time.perf_counter() - t0) / len(hu), np.concatenate(outs)


def authors_loop(gen: torch.nn.Module, device: torch.device,
                 target: int) -> Callable[[np.ndarray], np.ndarray]:
    net = gen.eval().to(device)

    def run(hu: np.ndarray) -> np.ndarray:
        outs = []
        for s in hu:
            x = torch.from_numpy(hu_to_unit(s))[None, None].to(device)
            with torch.no_grad():
                y = net(x, torch.tensor([target], device=device))
            outs.append(unit_to_hu(y[0, 0].cpu().numpy()))
        return np.stack(outs)

    return run


def bf16_trunk(engine: TorchEngine, source: str,
               target: str) -> Callable[[np.ndarray], np.ndarray]:
    """bf16 autocast on the CPU for encoder, trunk and decoder; the head in fp32; batched,
    channels_last (a copy of the engine's network, converted once, outside the timing). An
    HU-preserving filter_residual model gets its base filter's conversion as the engine gives
    it (in fp32, numpy, inside the timing: it is part of the model's cost)."""
    net = copy.deepcopy(engine.net).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    lo, hi = engine.info.hu_range
    label = engine.domains.index(target)

    def channels_last(hu: np.ndarray) -> tuple[torch.Tensor, tuple[slice, slice]]:
        arr, crop = network_input(hu, lo, hi, engine.multiple)
        return torch.from_numpy(arr).contiguous(memory_format=torch.channels_last), crop

    def run(hu: np.ndarray) -> np.ndarray:
        x, (rows, cols) = channels_last(hu)
        base = (None if engine.base_filter is None else
                channels_last(engine.base_filter.convert(hu, source, target))[0])
        with torch.inference_mode():
            y = run_generator(net, x, torch.full((len(hu),), label), "bf16", base)
        return unit_to_hu(y[:, 0, rows, cols].numpy(), lo, hi, clip=False)

    return run


def dicom_slices(folder: Path, slices: int) -> np.ndarray:
    """(slices, H, W) HU from the single-frame DICOM files under ``folder`` (sorted by name,
    repeated to ``slices``)."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.endswith(".md"))
    images = read_hu_slices(files)[0]
    return np.stack([images[i % len(images)] for i in range(max(slices, 1))])


def time_call(fn: Callable[[], object], device: torch.device, min_time: float,
              warmup: int = 2) -> float:
    """Mean seconds per call of ``fn`` after ``warmup`` calls: at least 2 calls and
    ``min_time`` seconds (one call when ``min_time`` is 0, for smoke runs)."""
    for _ in range(warmup):
        fn()
    sync(device)
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        if min_time <= 0 or (calls >= 2 and time.perf_counter() - t0 >= min_time):
            break
    sync(device)
    return (time.perf_counter() - t0) / calls


def rate_fields(flops: float, seconds_per_slice: float, pk: dict[str, float]) -> dict[str, float]:
    """slices/s, achieved GFLOP/s and its fraction of the measured fp32 and bf16 peaks."""
    gflops = flops / seconds_per_slice / 1e9
    out = {"s_per_slice": seconds_per_slice, "slices_per_s": 1.0 / seconds_per_slice,
           "gflops": gflops}
    for kind in ("fp32", "bf16"):
        if pk.get(f"{kind}_matmul_gflops"):
            out[f"frac_{kind}_peak"] = gflops / pk[f"{kind}_matmul_gflops"]
    return out


class NetSweep:
    """The network alone on device-resident input: (B, 1, 512, 512) in [-1, 1], labels (and a
    base image for filter_residual models) already on the device, inside no_grad. The weights
    are a frozen copy, so autocast does not cache weight casts (CUDA graphs need that)."""

    def __init__(self, net: Generator, device: torch.device, flops: float,
                 pk: dict[str, float], min_time: float, size: int = 512) -> None:
        self.net = copy.deepcopy(net).requires_grad_(False)
        self.device, self.flops, self.peaks, self.min_time = device, flops, pk, min_time
        self.size = size
        self.needs_base = net.config.needs_base

    def inputs(self, batch: int, fmt: torch.memory_format
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        g = torch.Generator(device="cpu").manual_seed(batch)
        x = (torch.rand(batch, 1, self.size, self.size, generator=g) * 2 - 1).to(self.device)
        x = x.contiguous(memory_format=fmt)
        labels = torch.zeros(batch, dtype=torch.long, device=self.device)
        return x, labels, (x.clone() if self.needs_base else None)

    def forward(self, precision: str, fmt: torch.memory_format, batch: int
                ) -> Callable[[], torch.Tensor]:
        net = self.net.to(memory_format=fmt)  # type: ignore[call-overload]
        x, labels, base = self.inputs(batch, fmt)
        return lambda: run_generator(net, x, labels, precision, base)

    def point(self, precision: str, fmt_name: str, batch: int, mode: str,
              fn: Callable[[], object]) -> dict[str, object]:
        sec = time_call(fn, self.device, self.min_time)
        return {"precision": precision, "memory_format": fmt_name, "batch": batch,
                "mode": mode, **rate_fields(self.flops, sec / batch, self.peaks)}


FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def run_net_sweep(sweep: NetSweep, precisions: list[str], batches: list[int],
                  record: Callable[[dict[str, object]], None]) -> None:
    """Eager forward passes over precision x memory format x batch (contiguous only for the
    first reduced precision, to see what channels_last buys); a batch that does not fit
    ends that line."""
    reduced = [p for p in precisions if p != "fp32"]
    for prec in precisions:
        for fmt_name, fmt in FORMATS.items():
            if fmt_name == "contiguous" and prec != (reduced[0] if reduced else "fp32"):
                continue
            for b in batches:
                try:
                    with torch.no_grad():
                        point = sweep.point(prec, fmt_name, b, "eager",
                                            sweep.forward(prec, fmt, b))
                except torch.cuda.OutOfMemoryError as exc:
                    record({"precision": prec, "memory_format": fmt_name, "batch": b,
                            "mode": "eager", "error": str(exc).splitlines()[0]})
                    torch.cuda.empty_cache()
                    break
                record(point)
                print(f"  net {prec:4s} {fmt_name:13s} b{b:<3d} {point['slices_per_s']:9.1f} "
                      f"slices/s  {point.get('frac_bf16_peak', float('nan')):6.1%} of bf16 "
                      "peak", flush=True)


def compiled_point(sweep: NetSweep, best: dict[str, Any], backend: str) -> dict[str, object]:
    """torch.compile of the forward pass at the sweep's best reduced-precision point."""
    prec, fmt_name, b = best["precision"], best["memory_format"], best["batch"]
    net = sweep.net.to(memory_format=FORMATS[fmt_name])  # type: ignore[call-overload]
    x, labels, base = sweep.inputs(b, FORMATS[fmt_name])

    def forward(x: torch.Tensor, labels: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        return run_generator(net, x, labels, prec, base)

    fn = torch.compile(forward, backend=backend)
    with torch.no_grad():
        t0 = time.perf_counter()
        fn(x, labels, base)
        sync(sweep.device)
        compile_s = time.perf_counter() - t0
        point = sweep.point(prec, fmt_name, b, f"compile:{backend}",
                            lambda: fn(x, labels, base))
    point.update(compile_s=compile_s, speedup_vs_eager=point["slices_per_s"] /
                 best["slices_per_s"])
    return point


def cuda_graph_point(sweep: NetSweep, best: dict[str, Any]) -> dict[str, object]:
    """One forward pass captured as a CUDA graph and replayed (no per-kernel launch cost), at
    the sweep's best reduced-precision point; its output is compared with the eager pass."""
    prec, fmt_name, b = best["precision"], best["memory_format"], best["batch"]
    fn = sweep.forward(prec, FORMATS[fmt_name], b)
    with torch.no_grad():
        side = torch.cuda.Stream(sweep.device)
        side.wait_stream(torch.cuda.current_stream(sweep.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream(sweep.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = fn()
        graph.replay()
        sync(sweep.device)
        diff = float((static_out.float() - fn().float()).abs().max())
        point = sweep.point(prec, fmt_name, b, "cuda-graph", graph.replay)
    point.update(speedup_vs_eager=point["slices_per_s"] / best["slices_per_s"],
                 max_abs_diff_vs_eager_unit=diff)
    return point


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model NAME|PATH ('default': the default model); "
                    "without it, random weights of the paper's shape")
    ap.add_argument("--conv-dim", type=int, default=64, help="random weights: generator width")
    ap.add_argument("--n-res", type=int, default=6, help="random weights: residual blocks")
    ap.add_argument("--input", type=Path, help="DICOM folder whose slices are converted "
                    "(instead of simulating held-out slices)")
    ap.add_argument("--slices", type=int, default=8, help="slices timed per path")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batch-sizes", default="", help="CUDA: comma list for a batch sweep")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--int8-variants", default="first,last:minmax",
                    help="';'-separated KEEP:CALIBRATION variants; KEEP is a comma list of "
                    "first, second, third, last, decoder (convolutions left fp32); "
                    "CALIBRATION minmax|percentile|entropy")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--calib-slices", type=int, default=4, help="simulated slices per kernel")
    ap.add_argument("--no-onnx", action="store_true", help="leave out the ONNX Runtime paths")
    ap.add_argument("--net-sweep", action="store_true",
                    help="time the network alone on device-resident slices")
    ap.add_argument("--sweep-batches", default="1,2,4,8,16,32")
    ap.add_argument("--precisions", default="fp32,bf16,fp16",
                    help="--net-sweep precisions (the CPU skips fp16)")
    ap.add_argument("--min-time", type=float, default=0.3,
                    help="--net-sweep: seconds timed per point (0: one call)")
    ap.add_argument("--compile", action="store_true", help="--net-sweep: also torch.compile")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="--net-sweep: also a captured CUDA graph (CUDA only)")
    ap.add_argument("--direction", default="", metavar="SRC:TGT",
                    help="the direction timed (default: the sharpest kernel to the softest)")
    ap.add_argument("--baseline", help="another model NAME|PATH timed torch fp32 in the same "
                    "run on the same slices (e.g. resim-fr-v1); every row gets its ratio")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kc-infer-"))
    if args.model:
        model = resolve_model(None if args.model == "default" else args.model)
        trained = True
    else:
        model, _ = random_model(work / "bench.safetensors", args.conv_dim, args.n_res)
        trained = False
    engine = TorchEngine(model, args.device)
    dev = engine.device
    result: dict[str, Any] = {"benchmark": "inference_bench", "status": "running",
                              "args": vars(args), "machine": machine_info(dev)}
    write_json(args.json, result)

    def sync_dev() -> None:
        sync(dev)

    domains = list(engine.domains)
    src, dst = domains[-1], domains[0]  # sharpest -> softest
    if args.direction:
        src, _, dst = args.direction.partition(":")
        if src not in domains or dst not in domains or src == dst:
            ap.error(f"--direction {args.direction}: two of {', '.join(domains)}")
    target = domains.index(dst)
    flops = conv_flops(Generator(engine.config), 512, 512)  # architecture only, on the CPU
    result["model"] = {"id": engine.info.model_id, "trained": trained, "source": src,
                       "target": dst, "gflop_per_slice": flops / 1e9,
                       "conv_dim": engine.config.conv_dim, "n_res": engine.config.n_res,
                       "output": engine.config.output}

    if args.input:
        hu = dicom_slices(args.input, args.slices)
        result["slices_from"] = str(args.input)
    else:
        print("simulating held-out slices (seed 9001) ...", flush=True)
        held = simulated_slices(work / "eval", 9001, max(args.slices, 2))
        hu = held[src][: args.slices]
        result["slices_from"] = "simulated, seed 9001"
    pk = peaks(dev)
    peak = pk["fp32_matmul_gflops"]
    result["peaks"] = pk
    write_json(args.json, result)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"torch threads, torch {torch.__version__}, device {dev}")
    print(f"model: {engine.info.model_id} ({'trained' if trained else 'random weights'}), "
          f"{flops / 1e9:.1f} GFLOP per 512x512 slice; {src} -> {dst}; {len(hu)} slices; "
          f"fp32 matmul peak {peak:.1f} GFLOP/s")

    rows: list[tuple[str, int, float, np.ndarray]] = []
    t, ref = timed(lambda h: engine.convert(h, src, dst), hu, args.batch_size, sync_dev)
    if engine.base_filter is None:  # the paper's generator: as the reference code runs it
        s_loop, _ = timed(authors_loop(engine.net, dev, target), hu[: max(2, len(hu) // 2)],
                          1, sync_dev)
        rows.append(("authors-loop fp32", 1, s_loop, ref))
    else:  # an HU-preserving filter_residual model: what its base filter alone costs
        base = engine.base_filter
        s_filter, y_filter = timed(lambda h: base.convert(h, src, dst), hu, args.batch_size)
        rows.append(("its base filter alone (numpy)", args.batch_size, s_filter, y_filter))
        limited = engine.route_filter()  # what --method filter runs: noise-limited
        s_lim, y_lim = timed(lambda h: limited.convert(h, src, dst), hu, args.batch_size)
        rows.append(("the filter, noise-limited (--method filter)", args.batch_size, s_lim,
                     y_lim))
    routed = bool(getattr(engine, "direction_use", None)) and not engine.uses_network(src, dst)
    if routed:  # no network runs: GFLOP/s and % of peak would be meaningless
        print(f"{src} -> {dst}: the model's direction map runs the filter here, not its network")
    result["model"]["routed_to_filter"] = routed
    rows.append(("torch fp32", args.batch_size, t, ref))
    baseline_sec = None
    if args.baseline:  # another model, same slices, same run: the ratio users compare
        other = TorchEngine(resolve_model(args.baseline), args.device)
        baseline_sec, y_base = timed(lambda h: other.convert(h, src, dst), hu, args.batch_size,
                                     sync_dev)
        rows.append((f"baseline {other.info.name} torch fp32", args.batch_size, baseline_sec,
                     y_base))
        result["baseline"] = {"id": other.info.model_id, "gflop_per_slice": conv_flops(
            Generator(other.config), 512, 512) / 1e9}
    if dev.type == "cuda":
        for prec in ("bf16", "fp16"):
            eng = TorchEngine(model, args.device, prec)
            t, y = timed(lambda h, e=eng: e.convert(h, src, dst), hu, args.batch_size,
                         sync_dev)
            rows.append((f"torch {prec} autocast", args.batch_size, t, y))
    try:
        if args.no_onnx:
            raise ImportError
        from kernelconv.engines.onnx_engine import OnnxEngine, onnx_file_for

        onnx_engine = OnnxEngine(model, args.device)
        t, y = timed(lambda h: onnx_engine.convert(h, src, dst), hu, args.batch_size)
        rows.append((f"onnx fp32 ({onnx_engine.providers[0]})", args.batch_size, t, y))
        if args.int8 and engine.base_filter is not None:
            print("onnx int8 skipped: its calibration feeds image and target only, not the "
                  "base filter's conversion a filter_residual model also takes")
        elif args.int8:
            import onnxruntime as ort

            from kernelconv.engines.quantize import quantize_int8

            print("calibrating int8 on simulated slices (seed 4242) ...", flush=True)
            calib = simulated_slices(work / "calib", 4242, args.calib_slices)
            images = np.concatenate([hu_to_unit(v)[:, None] for v in calib.values()])
            labels = np.concatenate([one_hot(domains.index(d), len(domains), len(v))
                                     for d in calib for v in [calib[d]]])
            labels = np.roll(labels, 1, axis=0)  # mixed targets across the calibration set
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            for variant in args.int8_variants.split(";"):
                keep, _, method = variant.partition(":")
                q = quantize_int8(onnx_file_for(model), work / "int8.onnx", images, labels,
                                  keep.split(",") if keep else [], method or "minmax")
                sess = ort.InferenceSession(str(q), opts, providers=["CPUExecutionProvider"])

                def int8(h: np.ndarray, sess: ort.InferenceSession = sess) -> np.ndarray:
                    arr, (r, c) = network_input(h, HU_MIN, HU_MAX, 4)
                    out = sess.run(None, {"image": arr,
                                          "target": one_hot(target, len(domains), len(h))})[0]
                    return unit_to_hu(out[:, 0, r, c])

                t, y = timed(int8, hu, args.batch_size)
                rows.append((f"onnx int8 fp32:{keep} {method or 'minmax'}", args.batch_size,
                             t, y))
    except ImportError:
        print("onnx paths skipped: " + ("--no-onnx" if args.no_onnx
                                         else "pip install 'kernelconv[onnx]'"))
    if args.bf16 and dev.type == "cpu":
        t, y = timed(bf16_trunk(engine, src, dst), hu, args.batch_size)
        rows.append(("torch bf16 trunk, fp32 head", args.batch_size, t, y))

    best_fp32 = min(r[2] for r in rows[1:] if r[0].startswith(("torch fp32", "onnx fp32")))
    print(f"\n{'path':44s} {'batch':>5s} {'s/slice':>8s} {'slices/s':>9s} {'vs row 1':>8s} "
          f"{'vs best fp32':>12s} {'GFLOP/s':>8s} {'% peak':>6s}  accuracy vs torch fp32"
          + ("; speed vs baseline" if baseline_sec else ""))
    for name, batch, sec, y in rows:
        d = np.abs(y.astype(np.float64) - ref[: len(y)])
        acc = (f"mean |dHU| {d.mean():.3f}, max {d.max():.1f}" if trained else "n/a (random)")
        if "authors" in name:
            acc = "reference"
        # no GFLOP/s where this model's network does not run
        no_rate = routed or name.startswith(("its base filter", "the filter", "baseline"))
        rate = ("       -      -" if no_rate else
                f"{flops / sec / 1e9:8.1f} {flops / sec / 1e9 / peak:6.0%}")
        if name.startswith("baseline"):
            acc = "(another model)"
        vs_base = f"; {baseline_sec / sec:.2f}x" if baseline_sec else ""
        print(f"{name:44s} {batch:5d} {sec:8.3f} {1 / sec:9.3f} {rows[0][2] / sec:7.2f}x "
              f"{best_fp32 / sec:11.2f}x {rate}  {acc}{vs_base}")
        row: dict[str, Any] = {"path": name, "batch": batch, "vs_row_1": rows[0][2] / sec,
                               **rate_fields(flops, sec, pk)}
        if baseline_sec:
            row["vs_baseline"] = baseline_sec / sec
        if no_rate:
            row = {k: v for k, v in row.items() if not k.startswith(("gflops", "frac"))}
        if trained and "authors" not in name and not name.startswith("baseline"):
            row.update(mean_abs_dhu=float(d.mean()), max_abs_dhu=float(d.max()))
        result.setdefault("rows", []).append(row)
    write_json(args.json, result)

    if args.batch_sizes:  # on the CPU (smoke runs) the given slices, fp32 and bf16
        on_gpu = dev.type == "cuda"
        print(f"\n{'CUDA' if on_gpu else 'CPU'} batch sweep, model only (slices/s):")
        big = np.concatenate([hu] * max(1, 64 // len(hu)))[:64] if on_gpu else hu
        variants: list[tuple[str, str, bool]] = [
            (p, p, False) for p in ("fp32", "bf16", "fp16") if on_gpu or p != "fp16"]
        if engine.base_filter is not None:  # what the base filter on the GPU would give
            variants.append(("bf16, base filter on the device", "bf16", True))
        for label, prec, filter_on_gpu in variants:
            eng = TorchEngine(model, args.device, prec)
            if filter_on_gpu and eng.base_filter is not None:
                from kernelconv.engines.filter_engine import FilterEngine

                eng.base_filter = FilterEngine(eng.base_filter.kernels, noise_limit=False,
                                               device=str(dev))
            line = []
            for b in (int(x) for x in args.batch_sizes.split(",")):
                t, _ = timed(lambda h, e=eng: e.convert(h, src, dst), big, b, sync_dev)
                line.append(f"b{b}: {1 / t:.0f}")
                result.setdefault("engine_sweep", []).append(
                    {"precision": label, "batch": b, **rate_fields(flops, t, pk)})
                write_json(args.json, result)
            print(f"  {label}: " + ", ".join(line))

    if args.net_sweep:
        print("\nnetwork alone, slices already on the device:")
        precisions = [p for p in args.precisions.split(",")
                      if p and (dev.type == "cuda" or p != "fp16")]
        sweep = NetSweep(engine.net, dev, flops, pk, args.min_time)
        points: list[dict[str, Any]] = result.setdefault("net_sweep", [])

        def record(point: dict[str, object]) -> None:
            points.append(point)
            write_json(args.json, result)

        run_net_sweep(sweep, precisions, [int(b) for b in args.sweep_batches.split(",")],
                      record)
        ok = [p for p in points if "error" not in p]
        reduced = [p for p in ok if p["precision"] != "fp32"] or ok
        best = max(reduced, key=lambda p: p["slices_per_s"]) if reduced else None
        result["best_eager"] = best
        extras = []  # the cheap CUDA graph first: compiling can take a minute
        if args.cuda_graphs and best is not None:
            if dev.type != "cuda":
                result["cuda_graph"] = {"skipped": "CUDA graphs need a CUDA device"}
            else:
                extras.append(("cuda_graph", lambda: cuda_graph_point(sweep, best)))
        if args.compile and best is not None:
            extras.append(("compile", lambda: compiled_point(sweep, best, args.compile_backend)))
        for key, measure in extras:
            try:
                result[key] = measure()
                print(f"  {key}: {result[key]['slices_per_s']:.1f} slices/s "
                      f"({result[key]['speedup_vs_eager']:.2f}x eager)", flush=True)
            except Exception as exc:  # noqa: BLE001 - record why, keep the other figures
                result[key] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
                print(f"  {key} failed: {result[key]['error']}", flush=True)
            write_json(args.json, result)
    result["status"] = "ok"
    write_json(args.json, result)


if __name__ == "__main__":
    main()
