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
from kernelconv.hu_check import HuCheck, lowpass
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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["693_UNCR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm",
                                  "CT_small.dcm"])
@pytest.mark.parametrize(("source", "target"), [("B70f", "B30f"), ("B30f", "B70f"),
                                                 ("B50f", "B30f")])
def test_the_default_model_keeps_local_mean_hu_on_real_ct(name: str, source: str, target: str,
                                                         tmp_path: Path, capsys) -> None:
    """Real scanner images nobody here simulated (GE head, Siemens neck, an abdomen, a small GE
    slice), relabelled with a kernel: the bundled default model, through `convert` without
    --model, must keep the low-pass HU of soft tissue, fat and lung well inside the check."""
    make_series(dicom_file(name), tmp_path / "in", 2, kernel=source)
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", target,
                            "--device", "cpu"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    default = (Path(__file__).resolve().parent.parent / "models" / "DEFAULT").read_text().strip()
    assert default in report["method"], report["method"]  # the model converted it
    [series] = report["series"]
    check = series["hu_check"]
    assert check["passed"]
    for region in ("soft tissue", "fat", "lung"):
        bias = check["bias_hu"][region]
        assert bias is None or abs(bias) < 2.0, (region, bias)


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


def _ring_phantom(lung_hu: float) -> np.ndarray:
    img = np.full((256, 256), lung_hu)
    for edge in (np.s_[:, :40], np.s_[:, -40:], np.s_[:40, :], np.s_[-40:, :]):
        img[edge] = 40.0  # a ring of soft tissue: the body mask sees a patient
    return img


def test_clipping_noise_at_the_floor_is_not_counted_as_bias() -> None:
    """A sharp kernel's noisy lung, stored clipped at -1024 HU, is 'brighter' than the smooth
    image of the same raw data: where the kernel pair predicts that much noise, such pixels
    are not judged, while a real shift of a region clear of the floor still is."""
    rng = np.random.default_rng(3)
    smooth = _ring_phantom(-900.0)
    soft_in = smooth + rng.normal(0.0, 15.0, smooth.shape)  # a soft kernel's noise
    noisy = np.maximum(smooth + rng.normal(0.0, 90.0, smooth.shape), -1024.0)
    plain = float(lowpass(noisy, 0.7)[80:-80, 80:-80].mean() - smooth[80:-80, 80:-80].mean())
    assert plain > 2.0  # what counting every pixel would call a bias
    check = HuCheck(expected_noise_ratio=6.0)  # soft -> sharp: 15 HU in, about 90 out
    check.add(soft_in, noisy, 0.7)
    assert check.bias_hu["lung"] is None and check.passed  # too noisy to judge
    for shift, expect_pass in ((0.0, True), (12.0, False)):
        quiet = np.maximum(smooth + shift + rng.normal(0.0, 20.0, smooth.shape), -1024.0)
        check = HuCheck(expected_noise_ratio=1.0)
        check.add(soft_in, quiet, 0.7)
        lung = check.bias_hu["lung"]
        assert lung is not None and abs(lung - shift) < 1.0, (shift, lung)
        assert check.passed is expect_pass


@pytest.mark.parametrize("expected_ratio", [None, 1.0, 6.0])
def test_a_converter_cannot_hide_a_region_by_pushing_it_to_the_floor(
        expected_ratio: float | None) -> None:
    """Which pixels are judged is decided from the input and the kernel pair, never from the
    output: an output moved down towards -1024 HU, flattened to it, or made very noisy is
    still judged in the lung and the soft tissue of the input."""
    rng = np.random.default_rng(4)
    hu_in = _ring_phantom(-850.0) + rng.normal(0.0, 10.0, (256, 256))
    for out in (hu_in - 150.0, np.full_like(hu_in, -1024.0),
                hu_in + rng.normal(0.0, 400.0, hu_in.shape)):
        check = HuCheck(expected_noise_ratio=expected_ratio)
        check.add(hu_in, out, 0.7)
        assert check.bias_hu["lung"] is not None
        if out.std() < 100.0:  # the shifted and the flattened outputs
            assert not check.passed, check.bias_hu


@pytest.mark.slow
def test_a_true_kernel_change_passes(tmp_path: Path) -> None:
    """Reconstructions of the same simulated raw data with different kernels: the check on
    the real thing finds no bias in any checked region, in either direction."""
    from kernelconv.dicom.dataset import pixel_spacing_mm
    from kernelconv.kernel_response import load_response_table
    from kernelconv.sim.series import SimulationConfig, simulate

    simulate(tmp_path, SimulationConfig(patients=1, slices=2, seed=5), load_response_table())
    stacks = {}
    for kernel in ("B30f", "B70f"):
        files = sorted((tmp_path / "patient-000" / kernel).iterdir())
        stacks[kernel] = np.concatenate([decode_hu(pydicom.dcmread(f), f)[1] for f in files])
        px = pixel_spacing_mm(pydicom.dcmread(files[0]))
    for a, b in (("B30f", "B70f"), ("B70f", "B30f")):
        check = HuCheck(max_bias=1.5)
        check.add(stacks[a], stacks[b], px)
        assert check.passed, (a, b, check.bias_hu)
