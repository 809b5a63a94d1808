"""Calibration without pairs (`kernelconv calibrate --unpaired`): kernels learnt from an archive
where each scan exists in one kernel only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import output_series_dirs, run_cli

from kernelconv.dicom.dataset import decode_hu
from kernelconv.evaluation.metrics import psnr
from kernelconv.kernel_response import builtin_table, load_response_table

PAIR = Path(__file__).resolve().parent / "data" / "siemens-chest-pair"


def _by_z(folder: Path) -> dict[float, np.ndarray]:
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"):
        ds = pydicom.dcmread(path)
        out[round(float(ds.ImagePositionPatient[2]), 2)] = decode_hu(ds, path)[1][0]
    return out


def _psnr(pred: dict[float, np.ndarray], ref: dict[float, np.ndarray]) -> float:
    return float(np.mean([psnr(np.clip(pred[z], -1024, 3071), np.clip(ref[z], -1024, 3071))
                          for z in ref]))


@pytest.mark.slow
def test_an_unpaired_simulated_archive_recovers_the_kernel_pair(tmp_path: Path,
                                                                capsys) -> None:
    """B30f of one simulated patient, B70f of another (4 slices each): the calibrated windows'
    ratio is the true one within 30 % from 1 to 6 lp/cm, and converting a third patient with
    them is within 1.5 dB of converting with the true windows (measured: 1.35 dB below; the
    fingerprints of one patient's 4-8 flat tiles are 5-10 % off in MTF50)."""
    from kernelconv.sim.series import SimulationConfig, simulate

    sim = tmp_path / "sim"
    simulate(sim, SimulationConfig(patients=3, slices=4, seed=71), load_response_table())
    archive = tmp_path / "archive"
    shutil.copytree(sim / "patient-000" / "B30f", archive / "a" / "B30f")
    shutil.copytree(sim / "patient-001" / "B70f", archive / "b" / "B70f")
    table = tmp_path / "unpaired.json"
    code, _, err = run_cli(["calibrate", "--unpaired", archive, "--out-table", table], capsys)
    assert code == 0, err
    data = json.loads(table.read_text())
    assert sorted(k["name"] for k in data["kernels"]) == ["B30f", "B70f"]
    cal = load_response_table(table)
    true = builtin_table()
    f = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    ratio = cal["B70f"].window(f) / cal["B30f"].window(f)
    np.testing.assert_allclose(ratio, true["B70f"].window(f) / true["B30f"].window(f), rtol=0.30)
    assert data["calibration"]["anchor"] == "B30f" and data["transfers"] == []
    ref = _by_z(sim / "patient-002" / "B30f")
    scores = {}
    for name, extra in (("true", []), ("unpaired", ["--kernel-table", table])):
        out = tmp_path / name
        code, _, err = run_cli(["convert", sim / "patient-002" / "B70f", out, "--to", "B30f",
                                "--method", "filter", *extra], capsys)
        assert code == 0, err
        scores[name] = _psnr(_by_z(output_series_dirs(out)[0]), ref)
    assert scores["unpaired"] > scores["true"] - 1.5, scores


def test_the_real_pair_taken_apart_calibrates_without_pairs(tmp_path: Path, capsys) -> None:
    """The real Siemens chest taken apart: B40f from two slices, B70f from two others (no
    position in common: unpaired), tested on the two held-out pairs. The calibrated
    conversion B70f -> B40f passes the HU check and beats the built-in table's."""
    files = sorted(p.name for p in (PAIR / "B40f").iterdir() if p.suffix == ".dcm")
    archive, test = tmp_path / "archive", tmp_path / "test"
    for kernel, picks in (("B40f", files[0:2]), ("B70f", files[2:4])):
        (archive / kernel).mkdir(parents=True)
        for name in picks:
            shutil.copy(PAIR / kernel / name, archive / kernel / name)
    for kernel in ("B40f", "B70f"):
        (test / kernel).mkdir(parents=True)
        for name in files[4:6]:
            shutil.copy(PAIR / kernel / name, test / kernel / name)
    table = tmp_path / "unpaired.json"
    code, _, err = run_cli(["calibrate", "--unpaired", archive, "--out-table", table], capsys)
    assert code == 0, err
    assert "1 series" in " ".join(err.split())  # says that it rests on little
    ref = _by_z(test / "B40f")
    scores, checks = {}, {}
    for name, extra in (("built-in", []), ("unpaired", ["--kernel-table", table])):
        out = tmp_path / name
        code, _, err = run_cli(["convert", test / "B70f", out, "--to", "B40f", "--method",
                                "filter", *extra], capsys)
        assert code == 0, err
        report = json.loads((out / "kernelconv-report.json").read_text())["series"][0]
        checks[name] = report["hu_check"]
        scores[name] = _psnr(_by_z(output_series_dirs(out)[0]), ref)
    assert checks["unpaired"]["passed"]
    assert scores["unpaired"] > scores["built-in"], scores


def test_an_archive_that_shows_no_kernel_is_an_input_error(tmp_path: Path, capsys) -> None:
    from helpers import dicom_file, make_series

    make_series(dicom_file("CT_small.dcm"), tmp_path / "archive", 2, kernel="B30f")
    code, _, err = run_cli(["calibrate", "--unpaired", tmp_path / "archive", "--out-table",
                            tmp_path / "t.json"], capsys)
    assert code == 4
    assert "no series shows its kernel in its noise" in err
    assert not (tmp_path / "t.json").exists()
