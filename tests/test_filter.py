"""The classical MTF-ratio baseline through the DICOM pipeline, on a simulated patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import dciodvfy_errors, output_series_dirs, run_cli, simulate_into

from kernelconv.engines.filter_engine import FilterEngine


def _series_hu(folder: Path) -> dict[float, np.ndarray]:
    out = {}
    for p in folder.iterdir():
        ds = pydicom.dcmread(p)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        out[round(float(ds.ImagePositionPatient[2]), 3)] = hu.astype(np.float64)
    return out


def _rmse(a: dict[float, np.ndarray], b: dict[float, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return float(np.sqrt(np.mean([np.mean((np.clip(a[z], -1024, 3071) -
                                           np.clip(b[z], -1024, 3071)) ** 2) for z in a])))


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = simulate_into(tmp_path_factory.mktemp("sim"), 2, 11)
    return root / "patient-000"


@pytest.mark.parametrize("source,target", [("B70f", "B30f"), ("B70f", "B50f"),
                                           ("B50f", "B30f"), ("B30f", "B50f"),
                                           ("B30f", "B70f"), ("B50f", "B70f")])
def test_filter_beats_identity(patient: Path, source: str, target: str, tmp_path: Path,
                               capsys) -> None:
    code, _, err = run_cli(["convert", patient / source, tmp_path, "--to", target,
                            "--method", "filter"], capsys)
    assert code == 0, err
    [out_dir] = output_series_dirs(tmp_path)
    converted = _series_hu(out_dir)
    reference = _series_hu(patient / target)
    identity = _series_hu(patient / source)
    assert _rmse(converted, reference) < 0.6 * _rmse(identity, reference)
    if source == "B70f":  # conformance: the same derived-series rules as the model
        f = next(out_dir.iterdir())
        assert not dciodvfy_errors(f) - dciodvfy_errors(next((patient / source).iterdir()))
        ds = pydicom.dcmread(f)
        assert "MTF-ratio filter" in ds.DerivationDescription
        assert ds.DerivationCodeSequence[0].CodeValue == "113087"


def test_filter_keeps_mean_and_identity_for_same_kernel() -> None:
    rng = np.random.default_rng(0)
    hu = rng.normal(40, 30, size=(2, 64, 80)).astype(np.float32)
    eng = FilterEngine()
    assert np.allclose(eng.convert(hu, "B70f", "B30f").mean(), hu.mean(), atol=0.5)
    np.testing.assert_array_equal(eng.convert(hu, "B30f", "B30f"), hu)
    f = np.linspace(0, 14, 50)
    h = eng.transfer("B30f", "B70f", f)
    assert h[0] == pytest.approx(1.0) and np.all(np.isfinite(h))
