"""Inference paths side by side on this machine: slices/s, ratios, GFLOP/s, and accuracy.

    python benchmarks/inference_bench.py                     # paper-size random weights, CPU
    python benchmarks/inference_bench.py --model default     # the default model (+ accuracy)
    python benchmarks/inference_bench.py --int8 --bf16       # also the reduced-precision paths
    python benchmarks/inference_bench.py --device cuda --batch-sizes 1,2,4,8,16,32

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
simulated patients (seed 9001, not the calibration seed): mean and max |dHU| over the slices.
With random weights (no --model) only speed is meaningful.
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

import numpy as np
import torch
from common import conv_flops, matmul_peak, random_model

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model NAME|PATH ('default': the default model); "
                    "without it, random weights of the paper's shape")
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
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kc-infer-"))
    if args.model:
        model = resolve_model(None if args.model == "default" else args.model)
        trained = True
    else:
        model, _ = random_model(work / "bench.safetensors")
        trained = False
    engine = TorchEngine(model, args.device)
    dev = engine.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    domains = list(engine.domains)
    src, dst = domains[-1], domains[0]  # sharpest -> softest
    target = domains.index(dst)
    flops = conv_flops(Generator(engine.config), 512, 512)  # architecture only, on the CPU

    print("simulating held-out slices (seed 9001) ...", flush=True)
    held = simulated_slices(work / "eval", 9001, max(args.slices, 2))
    hu = held[src][: args.slices]
    peak = matmul_peak(dev)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"torch threads, torch {torch.__version__}, device {dev}")
    print(f"model: {engine.info.model_id} ({'trained' if trained else 'random weights'}), "
          f"{flops / 1e9:.1f} GFLOP per 512x512 slice; {src} -> {dst}; {len(hu)} slices; "
          f"fp32 matmul peak {peak:.1f} GFLOP/s")

    rows: list[tuple[str, int, float, np.ndarray]] = []
    t, ref = timed(lambda h: engine.convert(h, src, dst), hu, args.batch_size, sync)
    if engine.base_filter is None:  # the paper's generator: as the reference code runs it
        s_loop, _ = timed(authors_loop(engine.net, dev, target), hu[: max(2, len(hu) // 2)],
                          1, sync)
        rows.append(("authors-loop fp32", 1, s_loop, ref))
    else:  # an HU-preserving filter_residual model: what its base filter alone costs
        base = engine.base_filter
        s_filter, y_filter = timed(lambda h: base.convert(h, src, dst), hu, args.batch_size)
        rows.append(("its base filter alone (numpy)", args.batch_size, s_filter, y_filter))
    rows.append(("torch fp32", args.batch_size, t, ref))
    if dev.type == "cuda":
        for prec in ("bf16", "fp16"):
            eng = TorchEngine(model, args.device, prec)
            t, y = timed(lambda h, e=eng: e.convert(h, src, dst), hu, args.batch_size, sync)
            rows.append((f"torch {prec} autocast", args.batch_size, t, y))
    try:
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
        print("onnx paths skipped: pip install 'kernelconv[onnx]'")
    if args.bf16 and dev.type == "cpu":
        t, y = timed(bf16_trunk(engine, src, dst), hu, args.batch_size)
        rows.append(("torch bf16 trunk, fp32 head", args.batch_size, t, y))

    best_fp32 = min(r[2] for r in rows[1:] if r[0].startswith(("torch fp32", "onnx fp32")))
    print(f"\n{'path':44s} {'batch':>5s} {'s/slice':>8s} {'slices/s':>9s} {'vs row 1':>8s} "
          f"{'vs best fp32':>12s} {'GFLOP/s':>8s} {'% peak':>6s}  accuracy vs torch fp32")
    for name, batch, sec, y in rows:
        d = np.abs(y.astype(np.float64) - ref[: len(y)])
        acc = (f"mean |dHU| {d.mean():.3f}, max {d.max():.1f}" if trained else "n/a (random)")
        if "authors" in name:
            acc = "reference"
        rate = ("       -      -" if name.startswith("its base filter") else
                f"{flops / sec / 1e9:8.1f} {flops / sec / 1e9 / peak:6.0%}")
        print(f"{name:44s} {batch:5d} {sec:8.3f} {1 / sec:9.3f} {rows[0][2] / sec:7.2f}x "
              f"{best_fp32 / sec:11.2f}x {rate}  {acc}")

    if dev.type == "cuda" and args.batch_sizes:
        print("\nCUDA batch sweep, model only (slices/s):")
        big = np.concatenate([hu] * max(1, 64 // len(hu)))[:64]
        for prec in ("fp32", "bf16", "fp16"):
            eng = TorchEngine(model, args.device, prec)
            line = []
            for b in (int(x) for x in args.batch_sizes.split(",")):
                t, _ = timed(lambda h, e=eng: e.convert(h, src, dst), big, b, sync)
                line.append(f"b{b}: {1 / t:.0f}")
            print(f"  {prec}: " + ", ".join(line))


if __name__ == "__main__":
    main()
