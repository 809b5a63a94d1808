"""kernelconv evaluate: known answers on simulated series."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import run_cli, simulate_into


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = simulate_into(tmp_path_factory.mktemp("evalsim"), 4, 21)
    return root


def _copy_series(src: Path, dst: Path, noise_sd: float = 0.0, keep: int | None = None) -> None:
    dst.mkdir(parents=True)
    rng = np.random.default_rng(5)
    files = sorted(src.iterdir())[:keep] if keep else sorted(src.iterdir())
    for i, f in enumerate(reversed(files)):  # reversed names: pairing must use positions
        ds = pydicom.dcmread(f)
        if noise_sd:  # inside the body only, where no value is near the clipping limits
            hu = ds.pixel_array.astype(np.float64) - 1024.0
            hu += np.where(hu > -900.0, rng.normal(0.0, noise_sd, hu.shape), 0.0)
            ds.PixelData = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16).tobytes()
        ds.save_as(dst / f"x{i}", enforce_file_format=True)


def test_identical_series_give_perfect_scores(sim: Path, tmp_path: Path, capsys) -> None:
    _copy_series(sim / "patient-000" / "B30f", tmp_path / "pred")
    code, _, err = run_cli(["evaluate", "--pred", tmp_path / "pred", "--ref", sim, "--truth",
                            sim, "--target", "B30f", "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    [d] = json.loads((tmp_path / "rep" / "evaluation.json").read_text())["directions"]
    assert d["direction"] == "B30f -> B30f" and d["slices"] == 4
    assert d["psnr_db"] is None and d["ssim"] == pytest.approx(1.0)  # inf: strict JSON null
    assert "NaN" not in (tmp_path / "rep" / "evaluation.json").read_text()
    assert d["rmse_hu"] == 0.0 and d["mae_hu"] == 0.0
    assert all(v == 0.0 for v in d["bias_hu"].values() if v is not None)
    assert d["noise_ratio"] == pytest.approx(1.0) and d["laa950_diff_pp"] == 0.0
    assert d["laa910_diff_pp"] == 0.0 and d["nps_correlation"] == pytest.approx(1.0)
    assert d["passed"] and all(c["passed"] is not False for c in d["checks"].values())
    for name in ("evaluation.md", "nps.png", "difference.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 200


def test_known_added_noise_is_measured(sim: Path, tmp_path: Path, capsys) -> None:
    _copy_series(sim / "patient-000" / "B30f", tmp_path / "pred", noise_sd=20.0, keep=3)
    code, _, err = run_cli(["evaluate", "--pred", tmp_path / "pred", "--ref", sim, "--truth",
                            sim, "--target", "B30f", "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    [d] = json.loads((tmp_path / "rep" / "evaluation.json").read_text())["directions"]
    assert d["slices"] == 3  # only the slices present in both
    ref = pydicom.dcmread(sorted((sim / "patient-000" / "B30f").iterdir())[1]).pixel_array
    body = float(np.mean(ref.astype(np.float64) - 1024.0 > -900.0))
    expected_rmse = 20.0 * np.sqrt(body)
    assert d["rmse_hu"] == pytest.approx(expected_rmse, rel=0.05)
    assert d["psnr_db"] == pytest.approx(20 * np.log10(4095 / expected_rmse), abs=0.4)
    expected = np.hypot(d["noise_sd_ref_hu"], 20.0)
    assert d["noise_sd_pred_hu"] == pytest.approx(expected, rel=0.05)
    for roi in ("soft tissue", "fat", "lung"):
        assert abs(d["bias_hu"][roi]) < 1.5
    # white noise added: the prediction's noise power moves to higher frequencies
    assert d["nps_mean_pred_lpcm"] > d["nps_mean_ref_lpcm"]


def test_an_unconverted_sharp_series_fails_the_limits_it_misses(sim: Path, tmp_path: Path,
                                                                capsys) -> None:
    """Identity B70f -> B30f: mean HU is right (bias passes), noise, NPS shape and LAA are not;
    each limit is the user's to set, and the exit status does not depend on them."""
    args = ["evaluate", "--pred", sim / "patient-000" / "B70f", "--ref", sim, "--truth", sim,
            "--target", "B30f"]
    code, out, err = run_cli(args + ["--out", tmp_path / "a"], capsys)
    assert code == 0, err
    [d] = json.loads((tmp_path / "a" / "evaluation.json").read_text())["directions"]
    assert not d["passed"]
    checks = d["checks"]
    assert checks["bias soft tissue"]["passed"] is True
    assert checks["noise ratio"]["passed"] is False and checks["noise ratio"]["value"] > 2.0
    assert checks["LAA-950"]["passed"] is False and d["laa910_diff_pp"] > 0.0
    assert "FAIL: noise ratio" in out and "FAIL" in (tmp_path / "a" / "evaluation.md").read_text()
    code, out, err = run_cli(args + ["--out", tmp_path / "b", "--max-noise-error", "100",
                                     "--max-laa-diff", "100", "--min-nps-corr", "-1"], capsys)
    assert code == 0, err
    [d] = json.loads((tmp_path / "b" / "evaluation.json").read_text())["directions"]
    assert d["passed"] and d["checks"]["noise ratio"]["limit"] == 100.0
    code, _, err = run_cli(args + ["--out", tmp_path / "c", "--max-bias", "-1"], capsys)
    assert code == 2 and "Traceback" not in err


def test_converted_series_direction_and_table2_layout(sim: Path, tmp_path: Path,
                                                     capsys) -> None:
    for target in ("B30f", "B50f"):
        assert run_cli(["convert", sim / "patient-000" / "B70f", tmp_path / "conv", "--to",
                        target, "--method", "filter"], capsys)[0] == 0
    code, out, err = run_cli(["evaluate", "--pred", tmp_path / "conv", "--ref", sim,
                              "--truth", sim, "--out", tmp_path / "rep", "--label", "filter"],
                             capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "rep" / "evaluation.json").read_text())["directions"]
    assert [d["direction"] for d in summary] == ["B70f -> B30f", "B70f -> B50f"]
    md = (tmp_path / "rep" / "evaluation.md").read_text()
    assert "| method | B50f -> B30f PSNR | SSIM | B70f -> B30f PSNR |" in md
    assert "data range 4095" in md and "4095 HU" in out


def test_unconverted_series_needs_target(sim: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(sim / "patient-000" / "B70f", tmp_path / "pred")
    code, _, err = run_cli(["evaluate", "--pred", tmp_path / "pred", "--ref", sim,
                            "--out", tmp_path / "rep"], capsys)
    assert code == 4 and "--target" in err and "Traceback" not in err


@pytest.mark.slow
def test_table2_example_runs(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    default = root / "models" / ((root / "models" / "DEFAULT").read_text().strip() + ".safetensors")
    copy = tmp_path / "copy.safetensors"
    shutil.copy(default, copy)
    proc = subprocess.run([sys.executable, str(root / "examples" / "table2.py"), "--out",
                           str(tmp_path / "t2"), "--patients", "1", "--slices", "2", "--seed",
                           "4", "--model", str(default), "--model", str(copy)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "t2" / "table2.json").read_text())
    assert set(data) == {"identity", "MTF-ratio filter", f"model {default.stem}", "model copy"}
    assert [d["psnr_db"] for d in data[f"model {default.stem}"]] == \
        [d["psnr_db"] for d in data["model copy"]]  # every --model is evaluated, in its own row
    for method in data.values():
        assert len(method) == 6
    by = {d["direction"]: d for d in data["MTF-ratio filter"]}
    ident = {d["direction"]: d for d in data["identity"]}
    for direction in ("B70f -> B30f", "B70f -> B50f", "B50f -> B30f"):
        assert by[direction]["psnr_db"] > ident[direction]["psnr_db"]


def test_qa_phantom_mtf50_of_the_result(tmp_path: Path, capsys) -> None:
    """With --qa the MTF of prediction and reference is measured from the QA rod's edge: the
    MTF-ratio filter's B70f -> B30f lands on B30f's MTF50, the unconverted B70f does not."""
    code, _, err = run_cli(["simulate", tmp_path / "qa", "--phantom", "qa", "--slices", "2",
                            "--seed", "3"], capsys)
    assert code == 0, err
    sharp = tmp_path / "qa" / "qa-000" / "B70f"
    code, _, err = run_cli(["convert", sharp, tmp_path / "conv", "--to", "B30f", "--method",
                            "filter"], capsys)
    assert code == 0, err
    results = {}
    for name, pred, extra in (("filter", tmp_path / "conv", []),
                              ("identity", sharp, ["--target", "B30f"])):
        code, _, err = run_cli(["evaluate", "--pred", pred, "--ref", tmp_path / "qa", "--truth",
                                tmp_path / "qa", "--qa", "--out", tmp_path / name] + extra,
                               capsys)
        assert code == 0, err
        [results[name]] = json.loads((tmp_path / name / "evaluation.json").read_text()
                                     )["directions"]
    f, i = results["filter"], results["identity"]
    assert f["mtf50_pred_lpcm"] == pytest.approx(f["mtf50_ref_lpcm"], rel=0.05)
    assert f["checks"]["MTF50"]["passed"] is True
    assert i["mtf50_pred_lpcm"] > 1.5 * i["mtf50_ref_lpcm"]
    assert i["checks"]["MTF50"]["passed"] is False
    # without --qa nothing is measured and nothing fails for it
    code, _, err = run_cli(["evaluate", "--pred", sharp, "--ref", tmp_path / "qa", "--target",
                            "B30f", "--out", tmp_path / "plain"], capsys)
    [d] = json.loads((tmp_path / "plain" / "evaluation.json").read_text())["directions"]
    assert d["mtf50_pred_lpcm"] is None and "MTF50" not in d["checks"]
