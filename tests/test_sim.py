"""The simulator: meets the kernel spec (measured), deterministic, paired, realistic noise."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import run_cli

from kernelconv.evaluation.qa import measure_qa
from kernelconv.kernel_response import load_response_table
from kernelconv.sim.scanner import MU_WATER, Geometry, fbp, hu_to_mu, project


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "simulation.json"}


def test_projector_matches_analytic_disk_and_fbp_is_unbiased() -> None:
    geo = Geometry()
    c = (np.arange(geo.fine_size) - geo.fine_size / 2 + 0.5) * geo.fine_pixel
    X, Y = np.meshgrid(c, c)
    r, cx, cy = 100.0, 30.0, -20.0
    hu = np.where((X - cx) ** 2 + (Y - cy) ** 2 <= r * r, 0.0, -1000.0)
    proj = project(hu_to_mu(hu), geo)
    t = (np.arange(geo.n_det) - geo.n_det // 2) * geo.det_spacing
    for view, centre in ((0, cx), (geo.n_views // 2, cy)):  # theta = 0: t = x; 90: t = y
        chord = 2 * MU_WATER * np.sqrt(np.clip(r * r - (t - centre) ** 2, 0, None))
        inner = np.abs(t - centre) < r - 3
        np.testing.assert_allclose(proj[view][inner], chord[inner], atol=0.01)
    images = fbp(proj, geo, list(load_response_table().values()))
    c2 = (np.arange(geo.size) - geo.size / 2 + 0.5) * geo.pixel
    X2, Y2 = np.meshgrid(c2, c2)
    water = (X2 - cx) ** 2 + (Y2 - cy) ** 2 <= (r - 10) ** 2
    air = (X2 - cx) ** 2 + (Y2 - cy) ** 2 >= (r + 10) ** 2
    for img in images:
        assert abs(float(img[water].mean())) < 2.0
        assert abs(float(img[air].mean()) + 1000.0) < 2.0


@pytest.mark.slow
def test_qa_phantom_meets_the_kernel_spec(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["simulate", tmp_path / "qa", "--phantom", "qa", "--slices", "16",
                            "--seed", "3"], capsys)
    assert code == 0, err
    results = {r.kernel: r for r in measure_qa(tmp_path / "qa")}
    assert set(results) == {"B30f", "B50f", "B70f"}
    table = load_response_table()
    for name, r in results.items():
        checks = r.checks(table[name])
        assert checks and all(checks.values()), (name, r.mtf.mtf50, r.mtf.mtf10, r.mtf.peak,
                                                 r.noise_ratio, checks)
    code, out, _ = run_cli(["qa", tmp_path / "qa", "--plot", tmp_path / "mtf.png", "--json",
                            tmp_path / "qa.json"], capsys)
    assert code == 0 and "MISSES" not in out
    assert (tmp_path / "mtf.png").stat().st_size > 10_000
    assert len(json.loads((tmp_path / "qa.json").read_text())) == 3


def test_same_seed_same_files_and_paired_series(tmp_path: Path, capsys) -> None:
    for name in ("a", "b"):
        assert run_cli(["simulate", tmp_path / name, "--slices", "2", "--seed", "7"],
                       capsys)[0] == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert run_cli(["simulate", tmp_path / "c", "--slices", "2", "--seed", "8"], capsys)[0] == 0
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    patient = tmp_path / "a" / "patient-000"
    series = {k: [pydicom.dcmread(p) for p in sorted((patient / k).iterdir())]
              for k in ("B30f", "B50f", "B70f")}
    ref = series["B30f"]
    for kernel, images in series.items():
        assert len(images) == 2
        assert {ds.ConvolutionKernel for ds in images} == {kernel}
        assert len({ds.SeriesInstanceUID for ds in images}) == 1
        for ds, r in zip(images, ref, strict=True):
            assert ds.StudyInstanceUID == r.StudyInstanceUID
            assert ds.FrameOfReferenceUID == r.FrameOfReferenceUID
            assert ds.ImagePositionPatient == r.ImagePositionPatient
            assert float(ds.PixelSpacing[0]) == pytest.approx(0.684, abs=1e-3)
            assert ds.Rows == ds.Columns == 512
    truth = np.load(patient / "truth.npz")
    assert truth["hu"].shape == (2, 512, 512) and truth["lung"].shape == (2, 512, 512)
    assert 0.05 < truth["lung"].mean() < 0.5


def test_chest_noise_and_one_shared_noise_realisation(tmp_path: Path, capsys) -> None:
    from scipy.ndimage import binary_erosion

    assert run_cli(["simulate", tmp_path, "--slices", "1", "--seed", "2"], capsys)[0] == 0
    patient = tmp_path / "patient-000"
    truth = np.load(patient / "truth.npz")["hu"][0].astype(float)
    heart = binary_erosion(np.abs(truth - 40.0) < 0.5, iterations=6)
    assert heart.sum() > 2000
    err = {}
    for k in ("B30f", "B50f", "B70f"):
        ds = pydicom.dcmread(next((patient / k).iterdir()))
        img = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        err[k] = (img - truth)[heart]
    assert 12.0 <= err["B30f"].std() <= 20.0  # the spec's default-dose soft-tissue noise
    assert abs(err["B30f"].mean()) < 3.0
    # the same raw data reconstructed twice: the kernels' noise is strongly correlated
    assert np.corrcoef(err["B30f"], err["B50f"])[0, 1] > 0.3


def test_user_kernel_table(tmp_path: Path, capsys) -> None:
    table = tmp_path / "k.json"
    table.write_text(json.dumps([{"name": "B45x", "cutoff": 5.0, "order": 2.0,
                                  "sharpness": 45, "source": "test"}]))
    code, _, err = run_cli(["simulate", tmp_path / "o", "--slices", "1", "--kernels",
                            "B30f,B45x", "--kernel-table", table], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o" / "patient-000").iterdir()) == \
        ["B30f", "B45x", "truth.npz"]
    table.write_text(json.dumps([{"name": "Bad", "cutoff": -1, "order": 2}]))
    code, _, err = run_cli(["simulate", tmp_path / "p", "--kernels", "Bad", "--kernel-table",
                            table], capsys)
    assert code == 2 and "invalid kernel table" in err
    code, _, err = run_cli(["simulate", tmp_path / "q", "--kernels", "B99"], capsys)
    assert code == 2 and "B99" in err


def test_each_simulated_patient_is_its_own_scan(tmp_path: Path, capsys) -> None:
    # the reconstructions of one simulated scan share its acquisition date/time (the scan key
    # that pairs reconstructions across renewed UIDs), and two patients do not: with one fixed
    # time every patient of one geometry was a single "scan", so the archive-like split kept
    # one patient of eight and paired training could pair slices of different patients
    from kernelconv.dicom.dataset import scan_key
    from kernelconv.training.data import build_cache, one_reconstruction_per_scan

    assert run_cli(["simulate", tmp_path / "sim", "--patients", "3", "--slices", "1",
                    "--seed", "5"], capsys)[0] == 0
    keys = {}
    for patient in sorted((tmp_path / "sim").glob("patient-*")):
        keys[patient.name] = {scan_key(pydicom.dcmread(next((patient / k).iterdir())))
                              for k in ("B30f", "B50f", "B70f")}
    assert all(len(k) == 1 for k in keys.values())  # one scan per patient ...
    assert len(set().union(*keys.values())) == 3  # ... and three patients, three scans
    index = build_cache([tmp_path / "sim"], tmp_path / "cache", ["B30f", "B50f", "B70f"])
    kept = one_reconstruction_per_scan(index["series"])  # type: ignore[arg-type]
    assert sorted(int(s["domain"]) for s in kept) == [0, 1, 2]
    assert len({s["folder"].split("/")[-2] for s in kept}) == 3
