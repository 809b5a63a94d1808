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


def test_the_torch_filter_on_the_network_scale_is_the_hu_filter() -> None:
    """Training applies the filter to the network's [-1, 1] scale; a site calibration's fitted
    transfer need not have H(0) = 1 exactly (it holds the true target's low-pass shift), so
    the torch path centres on 0 HU: the same image as the numpy path on HU (without centring
    3 HU apart at H(0) = 0.997)."""
    import torch

    from kernelconv.engines.filter_engine import FilterEngine
    from kernelconv.hu import UNIT_ZERO_HU, hu_to_unit, unit_to_hu
    from kernelconv.kernel_response import KernelTable, builtin_table

    fitted = np.array([[0.0, 0.997], [2.0, 1.5], [7.0, 4.0]])
    engine = FilterEngine(KernelTable(builtin_table(), {("B30f", "B70f"): fitted}),
                          noise_limit=False)
    hu = (np.random.default_rng(0).normal(0.0, 30.0, (1, 64, 64)) - 800.0).astype(np.float32)
    expected = engine.convert(hu, "B30f", "B70f", 0.7)
    unit = torch.from_numpy(hu_to_unit(hu)[:, None])
    got = unit_to_hu(engine.convert_torch(unit, ["B30f"], ["B70f"], [0.7],
                                          zero=UNIT_ZERO_HU).numpy()[:, 0], clip=False)
    assert np.abs(got - expected).max() < 0.01
    uncentred = unit_to_hu(engine.convert_torch(unit, ["B30f"], ["B70f"], [0.7]).numpy()[:, 0],
                           clip=False)
    assert np.abs(uncentred - expected).max() > 1.0
