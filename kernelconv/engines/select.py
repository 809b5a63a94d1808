"""Choosing the engine a command runs: the one place that knows how a model is found and loaded.

``convert`` and ``listen`` describe what they want as an :class:`EngineSpec` (the defaults
below are the commands' defaults) and get back a :class:`SelectedEngine`: the kernels it
converts between, the model's metadata (read once), and a factory that builds the engine only
when a series needs converting (a dry run never loads weights).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kernelconv.engines import Engine, model_kernels
from kernelconv.errors import ModelError, UsageError
from kernelconv.modelfile import ModelInfo

METHODS = ("model", "filter")
BACKENDS = ("torch", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class EngineSpec:
    """What to convert with. Defaults are those of `convert` and `listen`."""

    method: str = "model"  # model: the GGCL generator; filter: the classical MTF-ratio filter
    model: str | None = None  # name or path; None: the default model
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    precision: str = "fp32"  # fp32, bf16, fp16 (CUDA only)
    backend: str | None = None  # torch or onnx; None: torch, or onnx for a .onnx model
    #: the filter's kernel table (built-in kernels + a JSON file, e.g. from `calibrate`)
    kernel_table: Path | None = None


@dataclass
class SelectedEngine:
    """An engine ready to be built, with what a command needs to know before building it."""

    factory: Callable[[], Engine]
    domains: tuple[str, ...]
    #: whose kernels these are, for messages ("the model sim-paired-v1", "the filter")
    owner: str
    info: ModelInfo | None = None
    path: Path | None = None

    def planned_route(self, source: str, target: str) -> str:
        """What a plan says converts ``source`` -> ``target`` where a model will run its
        filter instead of its network (from the model's metadata, no weights), else ""."""
        if self.info is None:
            return ""
        from kernelconv.engines import planned_route

        return planned_route(self.info, source, target)


def filter_engine(kernel_table: Path | None = None, device: str = "cpu") -> Engine:
    """The classical filter on the built-in kernel table, or on it plus a JSON kernel table
    (a `kernelconv calibrate` table brings its fitted transfers). The table's name and a hash
    of its content enter the method id, so output derived with another table gets other
    UIDs. On a CUDA ``device`` its FFTs run there (the same results: not in the method id)."""
    from kernelconv.engines.filter_engine import FilterEngine
    from kernelconv.kernel_response import KernelTable

    return FilterEngine(KernelTable.load(kernel_table), device=device)


def select_engine(spec: EngineSpec, notice: Callable[[str], None] = lambda m: None
                  ) -> SelectedEngine:
    """Resolve ``spec`` into a :class:`SelectedEngine`, reading the model's metadata once.

    Model and backend errors surface here, before any series is read (an ONNX export that is
    not cached yet is made here; ``notice`` is told first, as it takes a while).
    """
    if spec.method not in METHODS:
        raise UsageError(f"--method {spec.method}: expected one of {', '.join(METHODS)}")
    if spec.backend is not None and spec.backend not in BACKENDS:
        raise UsageError(f"--backend {spec.backend}: expected one of {', '.join(BACKENDS)}")
    if spec.method == "filter":
        engine = filter_engine(spec.kernel_table, spec.device)
        owner = "the filter" + (f" with kernel table {spec.kernel_table}" if spec.kernel_table
                                else "")
        return SelectedEngine(lambda: engine, engine.domains, owner)
    if spec.kernel_table is not None:
        raise UsageError("--kernel-table is the filter's kernel table: use it with "
                         "--method filter (a model carries its own kernels)")
    from kernelconv.modelfile import read_info, resolve_model

    path = resolve_model(spec.model)
    if path.suffix == ".onnx" or spec.backend == "onnx":
        if spec.backend == "torch":
            raise UsageError(f"{path}: an ONNX model runs with --backend onnx, not torch")
        from kernelconv.engines.onnx_engine import OnnxEngine, onnx_file_for, read_onnx_info

        if path.suffix == ".onnx":
            info = read_onnx_info(path)
            onnx_path = path
        else:
            source_info = read_info(path)
            notice(f"ONNX graph of {source_info.model_id}: exporting once if not cached...")
            onnx_path = onnx_file_for(path, source_info)
            info = read_onnx_info(onnx_path)
            if info.weights_sha256 != source_info.weights_sha256:
                raise ModelError(f"{onnx_path}: exported from other weights than {path}")
        return SelectedEngine(
            lambda: OnnxEngine(path, spec.device, spec.precision, info, onnx_path),
            model_kernels(info), f"the model {info.name}", info, path)
    from kernelconv.engines.torch_engine import TorchEngine

    info = read_info(path)
    return SelectedEngine(lambda: TorchEngine(path, spec.device, spec.precision),
                          model_kernels(info), f"the model {info.name}", info, path)
