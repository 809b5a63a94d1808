"""benchmarks/inference_bench.py's bf16 path runs HU-preserving filter_residual models (the
default model is one) as the engine does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from helpers import make_tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from inference_bench import bf16_trunk  # noqa: E402

from kernelconv.engines.torch_engine import TorchEngine  # noqa: E402


def test_bf16_path_feeds_a_filter_residual_model_its_base(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "fr.safetensors", output="filter_residual",
                            highpass_px=3.0)
    engine = TorchEngine(model, "cpu")
    assert engine.base_filter is not None
    rng = np.random.default_rng(0)
    hu = (rng.normal(0.0, 40.0, (2, 64, 64)) + np.where(rng.random((2, 64, 64)) < 0.3,
                                                         -800.0, 40.0)).astype(np.float32)
    fp32 = engine.convert(hu, "B70f", "B30f")
    bf16 = bf16_trunk(engine, "B70f", "B30f")(hu)
    assert bf16.shape == hu.shape
    # the same conversion: the filter's base plus a correction computed in bf16 (bf16 steps
    # are a few HU at the top of the range)
    diff = np.abs(bf16 - fp32)
    assert diff.mean() < 0.5 and diff.max() < 5.0
    assert np.abs(bf16 - hu).mean() > 5.0  # and it did convert (B70f -> B30f smooths)
