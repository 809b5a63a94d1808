"""The filter's torch path (what `convert --method filter --device cuda` runs) gives the numpy
path's results, tested with torch on the CPU: out-of-field padding, the per-slice soft -> sharp
noise limit, batch independence; and --device reaches the filter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from helpers import run_cli

from kernelconv.engines.filter_engine import PADDING_HU, SOFT_TO_SHARP_LAMBDA, FilterEngine
from kernelconv.engines.select import EngineSpec, filter_engine, select_engine
from kernelconv.engines.torch_engine import DeviceError

ROOT = Path(__file__).resolve().parents[1]
CANON = ROOT / "examples" / "data" / "canon-phantom"
NO_CUDA = not torch.cuda.is_available()


def _series(*folders: Path) -> tuple[np.ndarray, float]:
    """(slices, H, W) HU of the files in ``folders`` and their pixel spacing."""
    slices, spacing = [], 0.0
    for folder in folders:
        for f in sorted(folder.iterdir()):
            ds = pydicom.dcmread(f)
            slices.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
            spacing = float(ds.PixelSpacing[0])
    return np.stack(slices).astype(np.float32), spacing


CASES = {
    # Canon FC51 read as B70f: -2048 HU outside the reconstruction circle (padding), sharp ->
    # soft; FC13 read as B30f -> B70f: soft -> sharp, where the noise limit acts per slice
    "canon sharp->soft": ((CANON / "phantom1" / "FC51", CANON / "phantom2" / "FC51"),
                          "B70f", "B30f"),
    "canon soft->sharp": ((CANON / "phantom1" / "FC13", CANON / "phantom2" / "FC13"),
                          "B30f", "B70f"),
    "siemens chest": ((ROOT / "tests" / "data" / "siemens-chest-pair" / "B70f",),
                      "B70f", "B50f"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_path_equals_the_numpy_path_on_real_slices(case: str) -> None:
    folders, source, target = CASES[case]
    hu, px = _series(*folders)
    numpy_engine, torch_engine = FilterEngine(), FilterEngine(backend="torch")
    assert (numpy_engine.backend, torch_engine.backend) == ("numpy", "torch")
    ref = numpy_engine.convert(hu, source, target, px)
    out = torch_engine.convert(hu, source, target, px)
    assert out.dtype == np.float32 and out.shape == hu.shape
    assert np.abs(out.astype(np.float64) - ref).max() <= 0.01
    assert np.abs(ref - hu).mean() > 1.0  # it did convert
    padding = hu <= PADDING_HU
    if case.startswith("canon"):
        assert padding.sum() > 10_000  # the out-of-field handling was exercised
    np.testing.assert_array_equal(out[padding], hu[padding])  # padding kept as it was
    # the same per-slice noise limit (measured on the host in both paths)
    assert [d["lambda"] for d in torch_engine.limits] == \
        [d["lambda"] for d in numpy_engine.limits]
    assert torch_engine.last_limit == numpy_engine.last_limit
    if case == "canon soft->sharp":
        assert len(torch_engine.limits) == len(hu)
        assert max(d["lambda"] for d in torch_engine.limits) > SOFT_TO_SHARP_LAMBDA


def test_float32_ffts_are_within_a_hundredth_but_float64_is_what_runs() -> None:
    hu, px = _series(CANON / "phantom2" / "FC13")
    ref = FilterEngine().convert(hu, "B30f", "B70f", px)
    engine = FilterEngine(backend="torch")
    assert engine.fft_dtype == "float64"
    d64 = np.abs(engine.convert(hu, "B30f", "B70f", px).astype(np.float64) - ref).max()
    engine.fft_dtype = "float32"
    d32 = np.abs(engine.convert(hu, "B30f", "B70f", px).astype(np.float64) - ref).max()
    assert d64 < 1e-4 and d32 <= 0.01
    assert d32 > d64


@pytest.mark.parametrize("source, target", [("B70f", "B30f"), ("B30f", "B70f")])
def test_torch_path_does_not_depend_on_the_batch(source: str, target: str) -> None:
    rng = np.random.default_rng(3)
    hu = rng.normal(40.0, 25.0, (3, 40, 56)).astype(np.float32)  # small and not square
    hu[:, :6, :] = -3024.0  # out-of-field rows
    engine = FilterEngine(backend="torch")
    together = engine.convert(hu, source, target, 0.7)
    alone = np.concatenate([engine.convert(hu[i:i + 1], source, target, 0.7)
                            for i in range(len(hu))])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    np.testing.assert_allclose(together, FilterEngine().convert(hu, source, target, 0.7),
                               atol=0.01)
    assert np.all(together[:, :6] == -3024.0)


def test_device_choice_keeps_the_method_id_and_the_cpu_default() -> None:
    numpy_engine, torch_engine = FilterEngine(), FilterEngine(backend="torch")
    assert numpy_engine.device == "cpu" and numpy_engine.backend == "numpy"
    assert torch_engine.method_id == numpy_engine.method_id
    assert torch_engine.description == numpy_engine.description
    with pytest.raises(ValueError, match="numpy or torch"):
        FilterEngine(backend="cupy")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
def test_auto_is_the_cpu_without_a_gpu_and_cuda_is_refused() -> None:
    engine = FilterEngine(device="auto")
    assert (engine.device, engine.backend) == ("cpu", "numpy")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        FilterEngine(device="cuda")
    with pytest.raises(DeviceError, match="expected auto, cpu"):
        FilterEngine(device="tpu")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
def test_device_reaches_the_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = select_engine(EngineSpec(method="filter", device="cpu")).factory()
    assert getattr(engine, "device", None) == "cpu"
    with pytest.raises(DeviceError):
        select_engine(EngineSpec(method="filter", device="cuda"))
    with pytest.raises(DeviceError):
        filter_engine(None, "cuda:0")
    code, out, err = run_cli(["convert", CANON / "phantom1" / "FC51", tmp_path / "out",
                              "--to", "B30f", "--from", "B70f", "--method", "filter",
                              "--device", "cuda"], capsys)
    assert code == 2
    assert "no CUDA GPU" in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_path_equals_the_numpy_path(case: str) -> None:
    folders, source, target = CASES[case]
    hu, px = _series(*folders)
    ref = FilterEngine().convert(hu, source, target, px)
    engine = FilterEngine(device="cuda")
    assert engine.backend == "torch" and engine.device.startswith("cuda")
    assert np.abs(engine.convert(hu, source, target, px).astype(np.float64) - ref).max() <= 0.01
