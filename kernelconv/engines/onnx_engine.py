"""The GGCL generator run with ONNX Runtime, and the export that makes its ONNX file.

The ONNX graph has two inputs, ``image`` (N, 1, H, W) float32 in [-1, 1] (H and W multiples of
the network's size multiple, 4 for the paper's widths) and ``target`` (N, c_dim) float32 one-hot,
and one output ``converted`` (N, 1, H, W); batch, height and width are dynamic. The model's
metadata (the same JSON as in the .safetensors file: name, domains, HU range, architecture,
provenance, SHA-256 of the source weights) is stored in the ONNX ``metadata_props`` under the
key ``kernelconv``, so an .onnx file alone is a complete kernelconv model.

``--backend onnx`` with a .safetensors model uses ``NAME.onnx`` beside it when that file was
exported from the same weights, else exports once into the user cache
(``$XDG_CACHE_HOME/kernelconv/onnx``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from kernelconv import __version__
from kernelconv.engines import GeneratorEngine, one_hot
from kernelconv.errors import ModelError, UsageError
from kernelconv.fileio import atomic_path
from kernelconv.modelfile import (
    ModelInfo,
    direction_use_digest,
    info_from_metadata,
    kernels_digest,
    load_model,
    read_info,
)

OPSET = 18
META_KEY = "kernelconv"
ONNX_SUFFIX = ".onnx"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise UsageError(f"the ONNX backend needs the {module} package: "
                         "pip install 'kernelconv[onnx]'") from None


def export_onnx(model_path: Path, out: Path) -> Path:
    """Export a .safetensors model's generator to ``out`` (fp32 graph, opset 18), atomically."""
    _require("onnx")
    _require("onnxscript")
    import onnx
    import torch
    from torch.export import Dim

    from kernelconv.nets.generator import Generator, GeneratorConfig

    info, state = load_model(model_path)
    gen = Generator(GeneratorConfig.from_dict(info.arch_args))
    gen.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    gen.eval()

    class _OneHotTarget(torch.nn.Module):
        def __init__(self, net: Generator) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            out = self.net(image, target)
            assert isinstance(out, torch.Tensor)
            return out

    class _WithBase(_OneHotTarget):
        def forward(self, image: torch.Tensor, target: torch.Tensor,  # type: ignore[override]
                    base: torch.Tensor) -> torch.Tensor:
            out = self.net(image, target, base=base)
            assert isinstance(out, torch.Tensor)
            return out

    m = gen.config.size_multiple
    n = len(info.domains)
    with_base = gen.config.needs_base
    image = torch.zeros(2, 1, 4 * m, 4 * m)
    example: tuple[torch.Tensor, ...] = (image, torch.eye(n)[:2].reshape(2, n) if n > 1
                                         else torch.ones(2, 1))
    batch, rows, cols = Dim("batch"), Dim("rows", min=1, max=8192), Dim("cols", min=1, max=8192)
    shapes: dict[str, dict[int, Any]] = {"image": {0: batch, 2: m * rows, 3: m * cols},
                                         "target": {0: batch}}
    if with_base:
        example += (torch.zeros_like(image),)
        shapes["base"] = {0: batch, 2: m * rows, 3: m * cols}
    sink = io.StringIO()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter warns about optional packages it never needs
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
                warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                (_WithBase if with_base else _OneHotTarget)(gen), example,
                input_names=list(shapes), output_names=["converted"], opset_version=OPSET,
                dynamo=True, verbose=False, dynamic_shapes=shapes)
    finally:
        quiet.setLevel(level)
    assert program is not None
    proto = program.model_proto
    meta = info.to_json()
    meta["onnx"] = {"opset": OPSET, "exported_with": f"kernelconv {__version__}",
                    "torch": torch.__version__, "inputs": "image (N,1,H,W) in [-1,1]; target "
                    "(N,c_dim) one-hot" + ("; base (N,1,H,W): the MTF-ratio filter's "
                                           "conversion of image, in [-1,1]" if with_base else ""),
                    "size_multiple": m}
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, sort_keys=True)
    proto.producer_name, proto.producer_version = "kernelconv", __version__
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return out


def read_onnx_info(path: Path) -> ModelInfo:
    """The kernelconv metadata of an exported .onnx file (validated like a model file's)."""
    onnx = _require("onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (OSError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise ModelError(f"{path}: not an ONNX file ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # noqa: BLE001  (protobuf DecodeError and friends)
        raise ModelError(f"{path}: not an ONNX file ({type(exc).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise ModelError(f"{path}: an ONNX file without kernelconv metadata (export it with "
                         "`kernelconv export MODEL --onnx`)")
    try:
        meta = json.loads(props[META_KEY])
    except ValueError:
        raise ModelError(f"{path}: corrupt kernelconv metadata in the ONNX file") from None
    return info_from_metadata(path, meta)


def onnx_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kernelconv" / "onnx"


def onnx_file_for(model_path: Path, info: ModelInfo | None = None) -> Path:
    """The ONNX file for a model: the file itself, a matching NAME.onnx beside it, or the cached
    export (made now if missing). ``info``: the model's metadata when the caller has read it."""
    if model_path.suffix == ONNX_SUFFIX:
        return model_path
    info = info or read_info(model_path)
    beside = model_path.with_suffix(ONNX_SUFFIX)
    if beside.is_file():
        try:
            found = read_onnx_info(beside)
            if (found.weights_sha256, found.direction_use, kernels_digest(found)) == \
                    (info.weights_sha256, info.direction_use, kernels_digest(info)):
                return beside
        except ModelError:
            pass
    # the weights, the direction map and the stored kernels (responses, fitted transfers) all
    # shape the conversion: a re-exported run with a new calibration gets its own ONNX file
    use = direction_use_digest(info.direction_use)
    kernels = kernels_digest(info)
    cached = onnx_cache_dir() / (f"{info.name}-{info.weights_sha256[:16]}"
                                 + (f"-use-{use}" if use else "")
                                 + (f"-k-{kernels}" if kernels else "") + ONNX_SUFFIX)
    if not cached.is_file():
        export_onnx(model_path, cached)
    return cached


class OnnxEngine(GeneratorEngine):
    """Runs a kernelconv model through ONNX Runtime (CUDA execution provider when asked for or,
    with ``auto``, when onnxruntime-gpu sees a GPU; otherwise the CPU provider)."""

    def __init__(self, model_path: Path, device: str = "auto", precision: str = "fp32",
                 info: ModelInfo | None = None, onnx_path: Path | None = None) -> None:
        """``model_path``: a .onnx file or a .safetensors model (its ONNX export is found or
        made). ``info`` and ``onnx_path``, when the caller (engines.select) has already read
        the metadata and resolved the graph, are used as they are instead of reading again."""
        ort = _require("onnxruntime")
        if precision != "fp32":
            raise UsageError(f"--backend onnx runs fp32 only, not --precision {precision} "
                             "(docs/performance.md says why)")
        if onnx_path is None or info is None:
            source_info = read_info(model_path) if model_path.suffix != ONNX_SUFFIX else None
            onnx_path = onnx_file_for(model_path, source_info)
            info = read_onnx_info(onnx_path)
            if source_info is not None and info.weights_sha256 != source_info.weights_sha256:
                raise ModelError(f"{onnx_path}: exported from other weights than {model_path}")
        path = onnx_path
        have = ort.get_available_providers()
        spec = device.strip().lower()
        if spec.startswith("cuda") and "CUDAExecutionProvider" not in have:
            raise UsageError(f"--device {device}: onnxruntime has no CUDA execution provider "
                             "here (install onnxruntime-gpu on a machine with a GPU)")
        if spec not in ("auto", "cpu") and not spec.startswith("cuda"):
            raise UsageError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
        providers: list[Any] = ["CPUExecutionProvider"]
        if spec != "cpu" and "CUDAExecutionProvider" in have:
            index = int(spec.split(":")[1]) if ":" in spec else 0
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001  (onnxruntime raises untyped errors)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"{path}: ONNX Runtime cannot load it ({first})") from None
        self.providers = self.session.get_providers()
        self.path = path
        super().__init__(info, 1 << int(info.arch_args.get("n_down", 2)), backend="onnx")

    def forward(self, unit: np.ndarray, target: int,
                base: np.ndarray | None = None) -> np.ndarray:
        feeds = {"image": unit, "target": one_hot(target, len(self.domains), len(unit))}
        if base is not None:
            feeds["base"] = base
        out: np.ndarray = self.session.run(["converted"], feeds)[0]
        return out
