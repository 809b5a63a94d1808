"""ONNX export and the ONNX Runtime backend: metadata, equivalence with torch, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import output_series_dirs, read_all, run_cli

from kernelconv.bundled import example_series_dir
from kernelconv.engines.onnx_engine import OnnxEngine, read_onnx_info
from kernelconv.engines.torch_engine import TorchEngine
from kernelconv.modelfile import read_info, resolve_model


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _hu(ds) -> np.ndarray:  # type: ignore[no-untyped-def]
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_export_writes_onnx_with_kernelconv_metadata(tiny_model: Path, tmp_path: Path,
                                                     capsys) -> None:
    code, out, err = run_cli(["export", tiny_model, "--onnx", "--models-dir", tmp_path / "m"],
                             capsys)
    assert code == 0, err
    path = tmp_path / "m" / "tiny.onnx"
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["kernelconv"])
    source = read_info(tiny_model)
    assert meta["weights_sha256"] == source.weights_sha256
    assert meta["domains"] == ["B30f", "B50f", "B70f"] and meta["hu_range"] == [-1024, 3071]
    info = read_onnx_info(path)
    assert info.model_id == source.model_id
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in proto.graph.input]
    assert isinstance(dims[0][0], str) and isinstance(dims[0][2], str)  # dynamic N, H, W
    assert isinstance(dims[0][3], str) and dims[0][1] == 1


def test_onnx_matches_torch_on_odd_sizes_and_batches(tiny_model: Path) -> None:
    torch_engine = TorchEngine(tiny_model, "cpu")
    onnx_engine = OnnxEngine(tiny_model, "cpu")
    assert onnx_engine.method_id == torch_engine.method_id + "+onnx"  # distinct derived UIDs
    rng = np.random.default_rng(3)
    for shape in ((1, 64, 64), (3, 61, 90)):
        hu = rng.normal(0, 400, shape).astype(np.float32)
        a = torch_engine.convert(hu, "B70f", "B30f")
        b = onnx_engine.convert(hu, "B70f", "B30f")
        assert a.shape == b.shape == shape
        assert np.abs(a - b).max() <= 0.5


@pytest.mark.slow
def test_backends_agree_within_1_hu_on_real_slices_with_the_default_model(
        tmp_path: Path, capsys) -> None:
    """The default model on the bundled example series: torch vs ONNX Runtime, fp32."""
    model = resolve_model(None)
    series = example_series_dir()
    assert series is not None
    outs = {}
    for backend in ("torch", "onnx"):
        code, _, err = run_cli(["convert", series, tmp_path / backend, "--to", "B30f",
                                "--backend", backend, "--device", "cpu"], capsys)
        assert code == 0, err
        outs[backend] = sorted(read_all(output_series_dirs(tmp_path / backend)[0]),
                               key=lambda d: int(d.InstanceNumber))
    assert len(outs["torch"]) == len(outs["onnx"]) >= 4
    diffs = [np.abs(_hu(a) - _hu(b)).max() for a, b in zip(outs["torch"], outs["onnx"], strict=True)]
    assert max(diffs) <= 1.0, diffs
    first = outs["onnx"][0]
    assert read_info(model).model_id in str(first.DerivationDescription)


def test_onnx_file_as_model_and_cache_reuse(tiny_model: Path, tmp_path: Path, capsys) -> None:
    from helpers import dicom_file, make_series

    from kernelconv.engines.onnx_engine import onnx_file_for

    cached = onnx_file_for(tiny_model)
    stamp = cached.stat().st_mtime_ns
    assert onnx_file_for(tiny_model) == cached and cached.stat().st_mtime_ns == stamp
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2, kernel="B70f")
    series = tmp_path / "in"
    code, _, err = run_cli(["convert", series, tmp_path / "out", "--to", "B30f", "--model",
                            cached], capsys)
    assert code == 0, err
    code, _, err = run_cli(["convert", series, tmp_path / "out2", "--to", "B30f", "--model",
                            cached, "--backend", "torch"], capsys)
    assert code == 2 and "runs with --backend onnx" in err


def test_corrupt_and_foreign_onnx_files_are_refused(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all" * 10)
    code, _, err = run_cli(["convert", tmp_path, tmp_path / "out", "--to", "B30f", "--model",
                            bad], capsys)
    assert code == 3 and "bad.onnx" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    foreign = tmp_path / "foreign.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    code, _, err = run_cli(["convert", tmp_path, tmp_path / "out", "--to", "B30f", "--model",
                            foreign], capsys)
    assert code == 3 and "without kernelconv metadata" in err
    assert not (tmp_path / "out").exists()
