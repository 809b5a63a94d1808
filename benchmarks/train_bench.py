"""Training speed of the paper's configuration: seconds per iteration (D step, G step).

    python benchmarks/train_bench.py                      # CPU, 256 x 256 crops, batch 2
    python benchmarks/train_bench.py --device cuda --crop 512 --amp bf16

One iteration is one discriminator step, plus a generator step every n_critic (5) iterations,
as in training; the figure is the average over whole n_critic cycles. Random data: speed does
not depend on the images.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

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
    ap.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    args = ap.parse_args()

    dev = torch.device(args.device)
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig(conv_dim=args.g_conv_dim, n_res=args.g_repeat)).to(dev)
    disc = Discriminator(DiscriminatorConfig(conv_dim=args.d_conv_dim,
                                             feature_channels=gen.feature_channels)).to(dev)
    opt_g = torch.optim.Adam(gen.parameters(), 1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), 1e-4, betas=(0.5, 0.999))
    loss = StarGanLoss(gen, disc, LossWeights(), args.reg)
    x = torch.rand(args.batch_size, 1, args.crop, args.crop, device=dev) * 2 - 1
    c = torch.randint(0, 3, (args.batch_size,), device=dev)
    t = c.flip(0)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def update(opt: torch.optim.Optimizer, phase: Callable[[], tuple[torch.Tensor, Any]]) -> None:
        ctx = torch.autocast("cuda", dtype=dtype) if dtype else torch.autocast("cpu",
                                                                               enabled=False)
        with ctx:
            phase_loss, _ = phase()
        opt.zero_grad()
        phase_loss.backward()
        opt.step()
        sync()

    def step(with_g: bool) -> tuple[float, float]:
        sync()
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
          f"{torch.__version__}, device {dev}, amp {args.amp}")
    print(f"G {g_params:.2f} M parameters, D {d_params:.2f} M parameters, reg {args.reg}, "
          f"crop {args.crop}, batch {args.batch_size}, n_critic {args.n_critic}")
    print(f"D step: {sum(d_times) / len(d_times):.3f} s   G step: "
          f"{sum(g_times) / len(g_times):.3f} s")
    print(f"{total / iters:.3f} s/iteration   {iters / total:.3f} iterations/s   "
          f"(400k paper iterations: {400_000 * total / iters / 3600:.0f} h)")


if __name__ == "__main__":
    main()
