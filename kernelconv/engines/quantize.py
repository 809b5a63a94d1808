"""Static int8 quantisation of the ONNX graph (ONNX Runtime, QDQ, per-channel weights).

An experiment measured by ``benchmarks/inference_bench.py``; ``convert`` does not offer it
unless it meets the bar in docs/performance.md (at least 1.8x the best fp32 path with mean
|dHU| <= 1 and max |dHU| <= 10 on held-out simulated patients).

Convolutions are quantised (activations uint8, weights int8 per output channel, calibrated by
min/max on the slices given); InstanceNorm, ReLU, the residual additions and tanh stay fp32.
``keep_fp32`` names convolutions to leave in fp32 by position: ``first`` (its input is the
image, where a uint8 step would be 16 HU) and ``last`` (the output head).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from kernelconv.engines.onnx_engine import _require


def conv_names(onnx_path: Path) -> list[str]:
    onnx = _require("onnx")
    return [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "Conv"]


def quantize_int8(fp32_onnx: Path, out: Path, images: np.ndarray, targets: np.ndarray,
                  keep_fp32: Sequence[str] = ("first", "last"),
                  method: str = "minmax") -> Path:
    """Quantise ``fp32_onnx`` into ``out``, calibrated on ``images`` (N, 1, H, W) in [-1, 1]
    with one-hot ``targets`` (N, c_dim), fed one at a time."""
    _require("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    convs = conv_names(fp32_onnx)
    by_position = {"first": convs[0], "last": convs[-1], "second": convs[1],
                   "third": convs[2]}
    exclude = [by_position.get(k, k) for k in keep_fp32]
    if "decoder" in keep_fp32:  # the upsampling convolutions feed PixelShuffle (DepthToSpace)
        exclude += [convs[-3], convs[-2]]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items: Iterator[dict[str, np.ndarray]] = iter(
                {"image": images[i:i + 1].astype(np.float32),
                 "target": targets[i:i + 1].astype(np.float32)} for i in range(len(images)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix="kc-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(str(pre), str(out), _Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=exclude, calibrate_method=calibrate)
    return out
