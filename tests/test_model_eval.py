"""benchmarks/model_eval.py scores what `kernelconv convert` writes, rounding included."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from helpers import run_cli  # noqa: E402
from model_eval import (  # noqa: E402
    Method,
    convert_series,
    evaluate,
    paired_difference,
    paired_series,
    read_series,
)

from kernelconv.dicom.discovery import discover  # noqa: E402
from kernelconv.engines.select import EngineSpec, select_engine  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


@pytest.mark.parametrize("method", ["filter", "model"])
def test_evaluated_prediction_is_what_convert_writes(
        method: str, tiny_model: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    spec = (EngineSpec(method="filter") if method == "filter"
            else EngineSpec(model=str(tiny_model), device="cpu"))
    (series,) = discover(EXAMPLES / "chest-b70f").series
    work = tmp_path / "work"
    work.mkdir()
    pred, passed = convert_series(Method(method, select_engine(spec)), series, "B70f", "B30f",
                                  work)
    assert passed is True

    args = ["convert", EXAMPLES / "chest-b70f", tmp_path / "cli", "--to", "B30f"]
    args += ["--method", "filter"] if method == "filter" else ["--model", tiny_model,
                                                                "--device", "cpu"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    (written,) = [p for p in (tmp_path / "cli").rglob("*") if p.is_dir() and
                  any(f.is_file() for f in p.iterdir())]
    cli, _, _ = read_series(written)
    assert sorted(pred) == sorted(cli) and len(pred) == 4
    for z, image in pred.items():
        np.testing.assert_array_equal(image, cli[z])
        assert np.all(image == np.round(image))  # stored integers (slope 1), not engine floats


def test_identity_is_the_source_as_stored(tmp_path: Path) -> None:
    scans = paired_series(EXAMPLES)
    (scan,) = [s for s in scans if {"B70f", "B30f"} <= set(s)]
    figures = evaluate(Method("identity", None), [scan], tmp_path)
    f = figures["B70f -> B30f"]
    assert f["n"] == 4 and len(f["psnr_slices"]) == 4
    assert f["psnr"] == pytest.approx(np.mean(f["psnr_slices"]))
    assert "hu_check_passed" not in f


def test_paired_difference() -> None:
    a = [50.0, 51.0, 52.0, 53.0, 54.0, 55.0]
    b = [49.5, 50.4, 51.6, 52.5, 53.4, 54.6]
    d = paired_difference(a, b)
    assert d["n"] == 6 and d["mean"] == pytest.approx(0.5)
    assert d["sd"] == pytest.approx(np.std(np.subtract(a, b), ddof=1))
    lo, hi = d["ci95"]  # type: ignore[misc]
    assert 0.4 <= lo <= 0.5 <= hi <= 0.6
    one = paired_difference([50.0], [49.0])
    assert one == {"n": 1, "mean": 1.0, "sd": None, "ci95": None}
