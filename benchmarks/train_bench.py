"""Training speed of the paper's configuration: seconds per iteration (D step, G step).

    python benchmarks/train_bench.py                      # CPU, 256 x 256 crops, batch 2
    python benchmarks/train_bench.py --device cuda --crop 512 --amp bf16
    python benchmarks/train_bench.py --device cuda --crop 512 --amp none,bf16 --json t.json

One iteration is one discriminator step, plus a generator step every n_critic (5) iterations,
as in training; the figure is the average over whole n_critic cycles. Random data: speed does
not depend on the images. --amp takes a comma list (each measured with fresh networks);
--json FILE writes the figures after each.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
from common import machine_info, sync, write_json

from kernelconv.nets import Generator, GeneratorConfig
from kernelconv.nets.discriminator import Discriminator, DiscriminatorConfig
from kernelconv.training.losses import LossWeights, StarGanLoss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--cycles", type=int, default=3, help="n_critic cycles to time")
    ap.add_argument("--n-critic", type=int, default=5)
    ap.add_argument("--reg", default="ggcl")
    ap.add_argument("--g-conv-dim", type=int, default=64)
    ap.add_argument("--g-repeat", type=int, default=6)
    ap.add_argument("--d-conv-dim", type=int, default=32)
    ap.add_argument("--d-layers", type=int, default=7)
    ap.add_argument("--amp", default="none", help="none, bf16 or fp16, or a comma list")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args()
    amps = args.amp.split(",")
    if not set(amps) <= {"none", "bf16", "fp16"}:
        ap.error(f"--amp {args.amp}: expected none, bf16, fp16 or a comma list of them")
    dev = torch.device(args.device)
    doc: dict[str, Any] = {"benchmark": "train_bench", "status": "running", "args": vars(args),
                           "machine": machine_info(dev), "results": []}
    write_json(args.json, doc)
    for amp in amps:
        doc["results"].append(bench(args, dev, amp))
        write_json(args.json, doc)
    doc["status"] = "ok"
    write_json(args.json, doc)


def bench(args: argparse.Namespace, dev: torch.device, amp: str) -> dict[str, Any]:
    """Time whole n_critic cycles of fresh networks with ``amp``; print and return the figures."""
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig(conv_dim=args.g_conv_dim, n_res=args.g_repeat)).to(dev)
    disc = Discriminator(DiscriminatorConfig(conv_dim=args.d_conv_dim, n_layers=args.d_layers,
                                             feature_channels=gen.feature_channels)).to(dev)
    opt_g = torch.optim.Adam(gen.parameters(), 1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), 1e-4, betas=(0.5, 0.999))
    loss = StarGanLoss(gen, disc, LossWeights(), args.reg)
    x = torch.rand(args.batch_size, 1, args.crop, args.crop, device=dev) * 2 - 1
    c = torch.randint(0, 3, (args.batch_size,), device=dev)
    t = c.flip(0)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def update(opt: torch.optim.Optimizer, phase: Callable[[], tuple[torch.Tensor, Any]]) -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            phase_loss, _ = phase()
        opt.zero_grad()
        phase_loss.backward()
        opt.step()
        sync(dev)

    def step(with_g: bool) -> tuple[float, float]:
        sync(dev)
        t0 = time.perf_counter()
        update(opt_d, lambda: loss.d_step(x, c, t))
        t1 = time.perf_counter()
        if with_g:
            update(opt_g, lambda: loss.g_step(x, c, t))
        return t1 - t0, time.perf_counter() - t1

    step(True)  # warm-up
    d_times, g_times = [], []
    t0 = time.perf_counter()
    for _ in range(args.cycles):
        for k in range(args.n_critic):
            d, g = step(k == args.n_critic - 1)
            d_times.append(d)
            if k == args.n_critic - 1:
                g_times.append(g)
    total = time.perf_counter() - t0
    iters = args.cycles * args.n_critic
    g_params = sum(p.numel() for p in gen.parameters()) / 1e6
    d_params = sum(p.numel() for p in disc.parameters()) / 1e6
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch "
          f"{torch.__version__}, device {dev}, amp {amp}")
    print(f"G {g_params:.2f} M parameters, D {d_params:.2f} M parameters, reg {args.reg}, "
          f"crop {args.crop}, batch {args.batch_size}, n_critic {args.n_critic}")
    print(f"D step: {sum(d_times) / len(d_times):.3f} s   G step: "
          f"{sum(g_times) / len(g_times):.3f} s")
    print(f"{total / iters:.3f} s/iteration   {iters / total:.3f} iterations/s   "
          f"(400k paper iterations: {400_000 * total / iters / 3600:.0f} h)")
    return {"amp": amp, "g_mparams": g_params, "d_mparams": d_params,
            "d_step_s": sum(d_times) / len(d_times), "g_step_s": sum(g_times) / len(g_times),
            "s_per_iteration": total / iters, "iterations_per_s": iters / total,
            "paper_400k_hours": 400_000 * total / iters / 3600,
            "peak_memory_gib": (torch.cuda.max_memory_allocated(dev) / 2**30
                                if dev.type == "cuda" else None)}


if __name__ == "__main__":
    main()
