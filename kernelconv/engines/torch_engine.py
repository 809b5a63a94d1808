"""The GGCL generator run with PyTorch: padded, inference_mode; on CUDA batched, channels_last
and pinned; on the CPU one slice per forward pass in NCHW, which measured fastest there
(docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kernelconv.engines import GeneratorEngine
from kernelconv.errors import ModelError, UsageError
from kernelconv.modelfile import ModelInfo, load_model
from kernelconv.nets.generator import Generator, GeneratorConfig

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(UsageError):
    """--device or --precision cannot be used on this machine."""


def resolve_device(spec: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec}: no CUDA GPU is available (use cpu or auto)")
        try:
            dev = torch.device(spec)
        except RuntimeError:
            raise DeviceError(f"--device {spec}: not a device name") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) present")
        return dev
    raise DeviceError(f"--device {spec}: expected auto, cpu, cuda or cuda:N")


def run_generator(net: Generator, x: torch.Tensor, labels: torch.Tensor,
                  precision: str = "fp32", base: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's forward pass; with bf16/fp16 everything but the output head runs under
    autocast and the head (the last conv, and tanh or the residual composition) in fp32.

    The output is written as integers in a 4095 HU range: bf16 steps there are about 8 HU
    near the top of the range, so the layer that produces it must stay fp32.
    """
    if precision == "fp32":
        y = net(x, labels, base=base)
        assert isinstance(y, torch.Tensor)
        return y
    with torch.autocast(x.device.type, dtype=PRECISIONS[precision]):
        h = net.trunk(net.encoder(net.network_input(x, labels, base)))
        for up in net.decoder:
            h = up(h)
    out: torch.Tensor = net.compose(net.head(h.float()), x.float(),
                                    None if base is None else base.float())
    return out


class ModuleEngine(GeneratorEngine):
    """Runs a generator module already in memory (e.g. the one being trained) through exactly
    the conversion `convert` uses: the same normalisation, padding and crop. The module is
    used as it is (device, memory format and mode are the caller's)."""

    def __init__(self, net: Generator, info: ModelInfo, precision: str = "fp32") -> None:
        self.net = net
        self.device = next(net.parameters()).device
        self.precision = precision
        self.memory_format = torch.contiguous_format
        self.chunk = 1 << 30
        super().__init__(info, net.config.size_multiple)
        if precision != "fp32":  # reduced precision writes other pixels: other UIDs
            self.method_id += f"+{precision}"
            self.description += f" ({precision} autocast)"

    def correction_is_zero(self) -> bool:
        head = self.net.head[0]
        return bool(self.net.config.needs_base and isinstance(head, torch.nn.Conv2d)
                    and not torch.any(head.weight))

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(array)
        pin = self.device.type == "cuda"
        x = (x.pin_memory() if pin else x).to(self.device, non_blocking=pin)
        return x.contiguous(memory_format=self.memory_format)

    def forward(self, unit: np.ndarray, target: int,
                base: np.ndarray | None = None) -> np.ndarray:
        x = self._to_device(unit)
        b = self._to_device(base) if base is not None else None
        labels = torch.full((len(x),), target, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            y = torch.cat([run_generator(self.net, x[i:i + self.chunk],
                                         labels[i:i + self.chunk], self.precision,
                                         None if b is None else b[i:i + self.chunk])
                           for i in range(0, len(x), self.chunk)])
        return y.float().cpu().numpy()


class TorchEngine(ModuleEngine):
    """Runs a kernelconv model file's generator: loaded and verified once, moved to the device;
    on CUDA batched and channels_last, on the CPU one slice per forward pass in NCHW."""

    def __init__(self, model_path: Path, device: str = "auto", precision: str = "fp32") -> None:
        info, state = load_model(model_path)
        try:
            config = GeneratorConfig.from_dict(info.arch_args)
            net = Generator(config)
            net.load_state_dict(state, strict=True)
        except (ValueError, RuntimeError) as exc:
            first = str(exc).splitlines()[0]
            raise ModelError(f"{model_path}: weights do not fit the architecture ({first})") \
                from None
        self.config = config
        dev = resolve_device(device)
        if precision not in PRECISIONS:
            raise DeviceError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
        if precision == "fp16" and dev.type != "cuda":
            raise DeviceError("--precision fp16 needs a CUDA device; the CPU runs fp32 or bf16")
        on_gpu = dev.type == "cuda"
        memory_format = torch.channels_last if on_gpu else torch.contiguous_format
        net = net.eval().to(dev).to(memory_format=memory_format)  # type: ignore[call-overload]
        super().__init__(net, info, precision)
        self.memory_format = memory_format
        # slices per forward pass: the whole batch on a GPU; one on the CPU, where batch 1 in
        # NCHW beat batch 2-4 in channels_last by 10-20% (measured, docs/performance.md)
        self.chunk = 1 << 30 if on_gpu else 1
