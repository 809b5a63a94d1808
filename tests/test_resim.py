"""Training data that looks like real CT: re-simulated real anatomy, domain randomisation."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import dicom_file, make_series, run_cli

from kernelconv.dicom.discovery import discover
from kernelconv.evaluation.metrics import psnr
from kernelconv.kernel_response import load_response_table
from kernelconv.sim.resim import noise_sd
from kernelconv.sim.series import SimulationConfig, draw_variation


def _hu(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.fixture(scope="module")
def resim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resim")
    src = root / "real"
    make_series(dicom_file("693_UNCR.dcm"), src, 2, kernel="STANDARD")
    out = root / "out"
    from helpers import main

    try:
        main(["simulate", str(out), "--from-dicom", str(src), "--seed", "5"])
    except SystemExit as exc:
        assert exc.code == 0
    return src, out


def test_a_real_series_becomes_paired_series_in_every_kernel(resim: tuple[Path, Path]) -> None:
    src, out = resim
    folder = out / "resim-000"
    series = {s.kernel: s for s in discover(folder).series}
    assert sorted(series) == ["B30f", "B50f", "B70f"]
    assert len({s.study_uid for s in series.values()}) == 1  # one study, paired by position
    positions = {k: [sl.position for sl in s.slices] for k, s in series.items()}
    assert positions["B30f"] == positions["B50f"] == positions["B70f"]
    first = pydicom.dcmread(series["B70f"].slices[0].path)
    source = pydicom.dcmread(next(src.iterdir()))
    assert float(first.PixelSpacing[0]) == pytest.approx(float(source.PixelSpacing[0]), 1e-5)
    assert (first.Rows, first.Columns) == (source.Rows, source.Columns)
    with np.load(folder / "truth.npz") as truth:
        assert truth["hu"].shape == (2, 512, 512)
    assert noise_sd(np.full((64, 64), 40.0)) == 0.0
    # the same noise realisation in every kernel: sharper kernels are noisier, in the ratio
    # the kernel response table predicts (6.1 for B70f / B30f on the simulator)
    with np.load(folder / "truth.npz") as truth:
        t0 = truth["hu"][0].astype(np.float64)
    brain = (t0 > 0) & (t0 < 80)
    n = {k: float((_hu(series[k].slices[0].path) - t0)[brain].std()) for k in series}
    assert 1.5 < n["B50f"] / n["B30f"] < 3.5 and 4.0 < n["B70f"] / n["B30f"] < 9.0
    # real anatomy: the re-simulated B30f is close to the (denoised) source itself
    real = np.clip(_hu(sorted(src.iterdir())[0]), -1000, 3071)
    sim30 = _hu(series["B30f"].slices[0].path)
    assert psnr(np.clip(sim30, -1000, 3071), real) > 30.0


def test_re_simulation_leaves_the_source_alone_and_is_deterministic(
        resim: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    src, out = resim
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    code, _, err = run_cli(["simulate", tmp_path / "again", "--from-dicom", src, "--seed", "5"],
                           capsys)
    assert code == 0, err
    assert digest == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    for f in sorted((out / "resim-000" / "B70f").iterdir()):
        assert f.read_bytes() == (tmp_path / "again" / "resim-000" / "B70f" / f.name).read_bytes()
    info = json.loads((out / "resim-000" / "source.json").read_text())
    assert info["source_kernel"] == "STANDARD" and info["slices"] == 2


def test_the_filter_converts_re_simulated_sharp_to_soft(resim: tuple[Path, Path]) -> None:
    from kernelconv.engines.filter_engine import FilterEngine

    series = {s.kernel: s for s in discover(resim[1]).series}
    sharp = _hu(series["B70f"].slices[0].path)
    soft = _hu(series["B30f"].slices[0].path)
    px = float(pydicom.dcmread(series["B70f"].slices[0].path).PixelSpacing[0])
    converted = np.clip(FilterEngine().convert(sharp[None], "B70f", "B30f", px)[0], -1024, 3071)
    assert psnr(converted, soft) > psnr(sharp, soft) + 3.0


def test_no_ct_to_re_simulate_is_a_clear_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(dicom_file("MR_small.dcm"), tmp_path / "in" / "mr.dcm")
    code, _, err = run_cli(["simulate", tmp_path / "out", "--from-dicom", tmp_path / "in"],
                           capsys)
    assert code == 4 and "no single-frame CT series to re-simulate" in err


def test_domain_randomisation_draws_per_patient_inside_its_ranges() -> None:
    kernels = list(load_response_table().values())
    cfg = SimulationConfig(randomise=True)
    draws = [draw_variation(cfg, seed, kernels) for seed in range(40)]
    assert len({d.fov for d in draws}) == 40
    assert all(250 <= d.fov <= 500 and 0.85 <= d.body_scale <= 1.15 for d in draws)
    assert all(0.5 <= d.noise_factor <= 3.0 for d in draws)
    assert 0 < sum(d.table for d in draws) < 40 and 0 < sum(d.pad_outside for d in draws) < 40
    assert draw_variation(cfg, 3, kernels) == draws[3]  # a patient's draw is its seed's
    plain = draw_variation(SimulationConfig(fov=420.0, table=True), 3, kernels)
    assert (plain.fov, plain.table, plain.noise_factor, plain.jitter) == (420.0, True, 1.0, ())


def test_randomised_patients_carry_their_spacing_and_a_table(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["simulate", tmp_path / "sim", "--patients", "2", "--slices", "1",
                            "--randomise", "--seed", "11"], capsys)
    assert code == 0, err
    for patient in sorted((tmp_path / "sim").glob("patient-*")):
        with np.load(patient / "truth.npz") as truth:
            variation = json.loads(str(truth["variation"]))
        ds = pydicom.dcmread(next((patient / "B30f").iterdir()))
        assert float(ds.PixelSpacing[0]) == pytest.approx(variation["fov"] / 512, 1e-4)
        assert float(ds.ReconstructionDiameter) == pytest.approx(variation["fov"], 0.01)
