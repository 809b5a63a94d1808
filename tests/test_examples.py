"""examples/convert_api.py, run as a user runs it: a usage line, one-line errors, a conversion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "convert_api.py"


def convert_api(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_convert_api_without_arguments_prints_usage_and_exits_2() -> None:
    proc = convert_api()
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "usage: convert_api.py [-h] [--model NAME|PATH] [--to KERNEL] [IN] OUT",
        "convert_api.py: error: the following arguments are required: OUT"]


def test_convert_api_with_a_missing_input_folder_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    proc = convert_api(missing, tmp_path / "out")
    assert proc.returncode == 4  # InputError, as `kernelconv convert`
    assert proc.stderr == f"error: {missing}: no such file or directory\n"
    assert not (tmp_path / "out").exists()


def test_convert_api_with_an_unknown_model_names_it(tmp_path: Path) -> None:
    proc = convert_api(tmp_path / "out", "--model", "no-such-model")
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: model 'no-such-model' not found; installed: ")
    assert len(proc.stderr.splitlines()) == 1


def test_convert_api_converts_the_bundled_example_when_no_input_is_given(
        tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "out"
    proc = convert_api(out, "--model", tiny_model)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("chest-b70f: B70f -> B30f: converted")
    report = json.loads((out / "kernelconv-report.json").read_text())
    assert [s["status"] for s in report["series"]] == ["converted"]
    derived = [pydicom.dcmread(p) for p in sorted(out.rglob("IM*")) if p.is_file()]
    assert len(derived) == 4
    assert {ds.ConvolutionKernel for ds in derived} == {"B30f"}


def test_site_calibration_example_runs_and_the_calibration_beats_identity(tmp_path: Path) -> None:
    """examples/site_calibration.sh as a user runs it (without the optional fine-tune)."""
    script = SCRIPT.parent / "site_calibration.sh"
    out = tmp_path / "site"
    proc = subprocess.run(["bash", str(script), str(out)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "site-kernels.json").is_file() and (out / "site-kernels.png").is_file()

    def psnr_of(report: str) -> float:
        data = json.loads((out / report / "evaluation.json").read_text())
        [direction] = data["directions"]
        return float(direction["psnr_db"])

    for target, margin in (("FC13", 15.0), ("FC51", 6.0)):
        identity = psnr_of(f"report-identity-{target}")
        assert psnr_of(f"report-calibrated-{target}") > identity + margin
        assert psnr_of(f"report-uncalibrated-{target}") > identity
