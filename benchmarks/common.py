"""Shared by the benchmarks: FLOP counting, the machine's measured matmul peak, test models,
what machine a result came from, and JSON results (``--json``, read by benchmarks/gpu_suite.sh)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

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


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a timer sees it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peaks(device: torch.device) -> dict[str, Any]:
    """The device's measured fp32 and bf16 matrix-multiply GFLOP/s (GPU: 8192 x 8192 products,
    large enough to reach the tensor cores' rate; CPU: 2048 x 2048 fp32, as printed before,
    and 1024 x 1024 bf16)."""
    on_gpu = device.type == "cuda"
    out: dict[str, Any] = {"fp32_matmul_gflops": matmul_peak(device, 8192 if on_gpu else 2048)}
    try:  # a CPU without bf16 instructions emulates them slowly: a smaller product there
        out["bf16_matmul_gflops"] = matmul_peak(device, 8192 if on_gpu else 1024,
                                                dtype=torch.bfloat16)
    except RuntimeError as exc:
        out["bf16_error"] = str(exc).splitlines()[0]
    return out


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where a result was measured: host, torch and (on a GPU) the card, driver and CUDA."""
    info: dict[str, Any] = {
        "host": platform.node(), "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count,
                    capability=f"{props.major}.{props.minor}",
                    cudnn=torch.backends.cudnn.version(),
                    tf32_convolutions=torch.backends.cudnn.allow_tf32,
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return info


def write_json(path: str | Path | None, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` (if given) through a temporary file, so that a reader (or a
    step killed at its time limit) never sees half a file; called after every result, so a
    step stopped early keeps what it measured."""
    if not path:
        return
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path)


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
