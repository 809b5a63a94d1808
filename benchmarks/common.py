"""Shared by the benchmarks: FLOP counting, the machine's measured matmul peak, test models."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from kernelconv.modelfile import ModelInfo, save_model
from kernelconv.nets import Generator, GeneratorConfig


def conv_flops(net: torch.nn.Module, h: int, w: int) -> float:
    """FLOPs (2 x MACs) of the convolutions for one slice of h x w."""
    total = 0.0

    def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(mod, torch.nn.Conv2d)
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        total += 2.0 * out.numel() * k

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, torch.nn.Conv2d)]
    x = torch.zeros(1, 1, h, w)
    with torch.no_grad():
        needs_base = getattr(getattr(net, "config", None), "needs_base", False)
        net(x, torch.tensor([0]), base=x if needs_base else None)
    for hd in handles:
        hd.remove()
    return total


def matmul_peak(device: torch.device, n: int = 2048, reps: int = 10,
                dtype: torch.dtype = torch.float32, rounds: int = 3) -> float:
    """Measured matrix-multiply GFLOP/s, the best of ``rounds`` rounds of ``reps`` products:
    the machine's practical peak for this work (oneDNN's convolutions can beat it slightly,
    so a model may show a little over 100%)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2.0 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def random_model(path: Path, conv_dim: int = 64, n_res: int = 6) -> tuple[Path, Generator]:
    """A model file of the paper's shape with random weights (speed does not depend on them)."""
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig(c_dim=3, conv_dim=conv_dim, n_res=n_res))
    save_model(path, ModelInfo("bench", ["B30f", "B50f", "B70f"], gen.config.to_dict()),
               gen.state_dict())
    return path, gen


if __name__ == "__main__":  # python benchmarks/common.py: this machine's fp32 matmul peak
    import platform

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} torch "
          f"threads, torch {torch.__version__}, {dev}: fp32 matmul peak "
          f"{matmul_peak(dev):.1f} GFLOP/s")
