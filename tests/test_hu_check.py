"""The HU check on every converted series: a conversion that moves local mean HU is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import dicom_file, make_series, output_series_dirs, run_cli

from kernelconv.dicom.dataset import decode_hu
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.hu_check import HuCheck
from kernelconv.kernel_response import predicted_noise_ratio
from kernelconv.pipeline import ConvertOptions, run_convert


class BiasedEngine(FilterEngine):
    """The classical filter plus a constant: every tissue moves by ``offset`` HU."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset
        self.method_id = f"biased-{offset:g}"
        self.description = f"filter + {offset:g} HU (test)"

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68) -> np.ndarray:
        return super().convert(hu, source, target, pixel_mm) + self.offset


def _convert(src: Path, out: Path, engine: FilterEngine, **options: object):  # type: ignore[no-untyped-def]
    return run_convert(src, out, lambda: engine, engine.domains,
                       ConvertOptions(target="B30f", **options), owner="the filter")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm"])
def test_a_biased_engine_is_refused_with_nothing_written(name: str, tmp_path: Path) -> None:
    make_series(dicom_file(name), tmp_path / "in", 2, kernel="B70f")
    report = _convert(tmp_path / "in", tmp_path / "out", BiasedEngine(12.0))
    [result] = report.results
    assert result.status == "failed"
    assert re.search(r"HU check failed: the conversion moved the local mean HU of "
                     r"(soft tissue|fat|lung) by \+1[12]\.\d HU", result.reason), result.reason
    assert "limit 5 HU" in result.reason and "\n" not in result.reason
    assert result.hu_check is not None and not result.hu_check["passed"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.dcm"))
    assert output_series_dirs(tmp_path / "out") == []


def test_the_limit_is_an_option_and_inf_lifts_it(tmp_path: Path, capsys) -> None:
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 2, kernel="B70f")
    report = _convert(tmp_path / "in", tmp_path / "a", BiasedEngine(12.0), max_bias=15.0)
    assert report.results[0].status == "converted"
    assert report.results[0].hu_check["bias_hu"]["soft tissue"] == pytest.approx(12.0, abs=0.5)
    report = _convert(tmp_path / "in", tmp_path / "b", BiasedEngine(40.0),
                      max_bias=float("inf"))
    assert report.results[0].status == "converted"
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "c", "--to", "B30f",
                            "--method", "filter", "--max-bias", "0.01"], capsys)
    assert code == 1 and "HU check failed" in err


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm",
                                  "CT_small.dcm"])
@pytest.mark.parametrize("source", ["B70f", "B30f"])
def test_the_filter_passes_on_real_ct(name: str, source: str, tmp_path: Path, capsys) -> None:
    make_series(dicom_file(name), tmp_path / "in", 2, kernel=source)
    target = "B30f" if source == "B70f" else "B70f"
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", target,
                            "--method", "filter"], capsys)
    assert code == 0, err
    check = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text()
                       )["series"][0]["hu_check"]
    assert check["passed"]
    for region in ("soft tissue", "fat", "lung"):
        bias = check["bias_hu"][region]
        assert bias is None or abs(bias) < 1.5, (region, bias)


def test_noise_ratio_is_measured_and_predicted_from_the_kernel_pair(tmp_path: Path) -> None:
    path = dicom_file("693_UNCR.dcm")
    hu = decode_hu(pydicom.dcmread(path), path)[1]
    out = FilterEngine().convert(hu, "B70f", "B30f", 0.4785)
    check = HuCheck(expected_noise_ratio=predicted_noise_ratio("B70f", "B30f",
                                                               highpass_sigma_mm=2.5))
    check.add(np.clip(hu, -1024, 3071), out, 0.4785)
    assert check.noise_ratio is not None and check.noise_ratio < 0.9  # smoother
    assert check.expected_noise_ratio == pytest.approx(0.16, abs=0.02)
    assert "noise x" in check.summary() and "bias" in check.summary()


def test_the_listener_takes_the_same_limit() -> None:
    from kernelconv.pacs.config import ListenConfig

    cfg = ListenConfig(target="B30f").updated({"max_bias": 2.5}, "options")
    assert cfg.convert_options({}).max_bias == 2.5
    assert ListenConfig().max_bias == ConvertOptions(target="x").max_bias == 5.0
