"""Paths that used to write wrong or colliding output while reporting success (issue 25).

Each test failed before its fix: derived UIDs that ignored the assumed source kernel, reruns
that kept an earlier wrong conversion, Enhanced CT batched by file, an encoding error the HU
check could not see, the check's noise ratio from another table than the engine's, pixel
spacing read from one axis and defaulted silently, and a kernel-map target written under the
model's own name.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import (
    dicom_file,
    hu_enhanced_ct,
    make_series,
    output_series_dirs,
    read_all,
    run_cli,
)
from pydicom.dataset import Dataset

from kernelconv.dicom.dataset import decode_hu, frame_rescales
from kernelconv.dicom.derived import Derivation, derivation_of
from kernelconv.dicom.synthetic import SeriesInfo, ct_image, uid
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.errors import KernelconvError
from kernelconv.kernel_response import (
    KernelTable,
    builtin_table,
    load_response_table,
    responses_to_json,
)
from kernelconv.pipeline import ConvertOptions, run_convert

ROOT = Path(__file__).resolve().parent.parent
PAIR = Path(__file__).resolve().parent / "data" / "siemens-chest-pair"


def _report(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / "kernelconv-report.json").read_text())


def _pixels(folder: Path) -> dict[int, np.ndarray]:
    return {int(ds.InstanceNumber): ds.pixel_array for ds in read_all(folder)}


def _run(engine: FilterEngine, src: Path, out: Path, target: str = "B30f", **options: object):  # type: ignore[no-untyped-def]
    """run_convert with one engine object (its own kernels) and ConvertOptions(**options)."""
    return run_convert(src, out, lambda: engine, engine.domains,
                       ConvertOptions(target=target, **options))  # type: ignore[arg-type]


# ------------------------------------------------------------------ 1. UIDs and reruns

def test_other_assumed_source_kernels_get_other_uids(tmp_path: Path, capsys) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2)
    runs = {}
    for src in ("B70f", "B50f"):
        code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / src, "--to", "B30f",
                                "--method", "filter", "--from", src], capsys)
        assert code == 0, err
        [folder] = output_series_dirs(tmp_path / src)
        runs[src] = read_all(folder)
    a, b = runs["B70f"], runs["B50f"]
    assert not np.array_equal(a[0].pixel_array, b[0].pixel_array)  # different conversions...
    assert {d.SOPInstanceUID for d in a}.isdisjoint({d.SOPInstanceUID for d in b})
    assert a[0].SeriesInstanceUID != b[0].SeriesInstanceUID  # ...never share a UID


def test_a_rerun_with_other_settings_is_refused_then_replaced_never_skipped(
        tmp_path: Path, capsys) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2)
    out = tmp_path / "out"
    base = ["convert", tmp_path / "in", out, "--to", "B30f", "--method", "filter"]
    assert run_cli([*base, "--from", "B70f"], capsys)[0] == 0
    [folder] = output_series_dirs(out)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    code, _, err = run_cli([*base, "--from", "B50f"], capsys)  # a corrected --from
    assert code == 1
    [series] = _report(out)["series"]
    assert series["status"] == "failed"
    assert "holds another conversion of this series (B70f -> B30f" in series["reason"]
    assert "--overwrite" in series["reason"] and "\n" not in series["reason"]
    assert len([line for line in err.splitlines() if line.startswith("kernelconv:")]) == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # old output untouched

    code, _, err = run_cli([*base, "--from", "B50f", "--overwrite"], capsys)
    assert code == 0, err
    assert output_series_dirs(out) == [folder]  # replaced in place, nothing left beside it
    for ds in read_all(folder):
        made = derivation_of(ds)
        assert made is not None and made.source_kernel == "B50f"
    code, _, _ = run_cli([*base, "--from", "B50f"], capsys)  # the same settings again
    assert code == 0
    assert _report(out)["series"][0]["status"] == "skipped"
    assert "same conversion" in _report(out)["series"][0]["reason"]


def test_output_of_an_older_version_without_a_key_is_not_counted_as_done(
        tmp_path: Path, capsys) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2)
    out = tmp_path / "out"
    args = ["convert", tmp_path / "in", out, "--to", "B30f", "--method", "filter", "--from",
            "B70f"]
    assert run_cli(args, capsys)[0] == 0
    [folder] = output_series_dirs(out)
    for f in folder.iterdir():  # what kernelconv wrote before the key existed
        ds = pydicom.dcmread(f)
        item = ds.ContributingEquipmentSequence[-1]
        item.ContributionDescription = item.ContributionDescription.split(" key ")[0]
        ds.save_as(f)
    assert run_cli(args, capsys)[0] == 1
    assert "older kernelconv" in _report(out)["series"][0]["reason"]


@pytest.mark.parametrize("change", [
    {"source_kernel": "B50f"}, {"target_kernel": "FC13"}, {"method_id": "other-model@1"},
    {"table_digest": "0123456789abcdef"}, {"series_number_offset": 2000},
    {"source_domain": "B50f"}, {"target_domain": "B50f"},
])
def test_every_part_of_a_derivation_enters_its_key(change: dict[str, object]) -> None:
    base = Derivation("B70f", "B30f", "text", "m@1", True, 1000, "B70f", "B30f", "f" * 16)
    assert Derivation(**{**base.__dict__, **change}).key != base.key
    assert Derivation(**{**base.__dict__, "method": "other text"}).key == base.key


def test_the_kernel_table_content_enters_the_filters_derivation() -> None:
    table = builtin_table()
    edited = {**table, "B70f": dataclasses.replace(table["B70f"], cutoff=9.0)}
    assert KernelTable(table).digest("B70f", "B30f") != KernelTable(edited).digest("B70f", "B30f")
    # a pair the edit does not touch keeps its digest (and its UIDs)
    assert KernelTable(table).digest("B50f", "B30f") == KernelTable(edited).digest("B50f", "B30f")


def test_reduced_precision_changes_the_method_id(tiny_model: Path) -> None:
    from kernelconv.engines.torch_engine import TorchEngine

    fp32 = TorchEngine(tiny_model, "cpu", "fp32")
    bf16 = TorchEngine(tiny_model, "cpu", "bf16")  # the CPU runs bf16 autocast too
    assert bf16.method_id == fp32.method_id + "+bf16"
    x = np.random.default_rng(0).normal(0.0, 30.0, (1, 64, 64)).astype(np.float32)
    assert np.abs(bf16.convert(x, "B70f", "B30f") - fp32.convert(x, "B70f", "B30f")).max() < 5
    with pytest.raises(KernelconvError, match="fp16 needs a CUDA device"):
        TorchEngine(tiny_model, "cpu", "fp16")


# ------------------------------------------------------------------ 2. Enhanced CT batching

class RecordingFilter(FilterEngine):
    """The classical filter, recording how many frames each engine call gets."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68) -> np.ndarray:
        self.calls.append(len(hu))
        return super().convert(hu, source, target, pixel_mm)


def test_enhanced_ct_frames_go_through_the_engine_batch_size_at_a_time(tmp_path: Path) -> None:
    hu_enhanced_ct(tmp_path / "in" / "big.dcm", frames=5)
    results = {}
    for batch in (2, 8):
        engine = RecordingFilter()
        report = run_convert(tmp_path / "in", tmp_path / f"b{batch}", lambda e=engine: e,
                             engine.domains, ConvertOptions(target="B30f", batch_size=batch))
        assert report.results[0].status == "converted", report.results[0].reason
        assert max(engine.calls) <= batch and sum(engine.calls) == 5, engine.calls
        [folder] = output_series_dirs(tmp_path / f"b{batch}")
        [ds] = read_all(folder)
        results[batch] = ds.pixel_array
    assert results[2].shape == (5, 512, 512)
    np.testing.assert_array_equal(results[2], results[8])  # batching never changes a pixel


def test_soft_to_sharp_filter_does_not_depend_on_the_batch_size(tmp_path: Path,
                                                                 capsys) -> None:
    """The noise limit measures each slice's own noise: the slices sharing a batch do not
    change a slice's result (the real Canon FC13 phantom read as B30f -> B70f, where the
    limit acts on one slice and not on the other)."""
    pixels = {}
    for batch in ("1", "2"):
        out = tmp_path / batch
        code, _, err = run_cli(["convert", ROOT / "examples" / "data" / "canon-phantom" /
                                "phantom2" / "FC13", out, "--to", "B70f", "--from", "B30f",
                                "--method", "filter", "--batch-size", batch], capsys)
        assert code == 0, err
        pixels[batch] = _pixels(output_series_dirs(out)[0])
    assert len(pixels["1"]) == 2
    for n in pixels["1"]:
        np.testing.assert_array_equal(pixels["1"][n], pixels["2"][n])


# ------------------------------------------------------------------ 3. the written file

class IdentityFilter(FilterEngine):
    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68) -> np.ndarray:
        return hu.astype(np.float32)


def test_enhanced_ct_with_a_top_level_rescale_is_written_right(tmp_path: Path) -> None:
    src = hu_enhanced_ct(tmp_path / "in" / "top.dcm", frames=3, top_level_rescale=True)
    engine = IdentityFilter()
    report = _run(engine, tmp_path / "in", tmp_path / "out", "B30f")
    assert report.results[0].status == "converted", report.results[0].reason
    [folder] = output_series_dirs(tmp_path / "out")
    [f] = list(folder.iterdir())
    written = pydicom.dcmread(f)
    source = pydicom.dcmread(src)
    hu_in = decode_hu(source, src)[1]
    hu_out = decode_hu(written, f)[1]  # as a reader decodes it, every place rescale may be
    np.testing.assert_allclose(hu_out, hu_in, atol=0.5)
    assert float(written.RescaleIntercept) == frame_rescales(written)[0][1]
    pvt = written.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    assert float(pvt.RescaleIntercept) == float(written.RescaleIntercept) == -1024.0


def test_an_encoding_error_is_caught_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kernelconv.pipeline as pipeline

    real = pipeline.build_derived

    def off_by_three(*args, **kwargs):  # type: ignore[no-untyped-def]
        ds = real(*args, **kwargs)
        ds.RescaleIntercept = float(ds.RescaleIntercept) + 3.0
        return ds

    monkeypatch.setattr(pipeline, "build_derived", off_by_three)
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2, kernel="B70f")
    engine = FilterEngine()
    report = _run(engine, tmp_path / "in", tmp_path / "out", "B30f")
    [result] = report.results
    assert result.status == "failed"
    assert re.search(r"would decode up to 3\.\d HU away from the conversion", result.reason)
    assert output_series_dirs(tmp_path / "out") == []


# ------------------------------------------------------------------ 4. one kernel table

def _ring_series(folder: Path, kernel: str, seed: int = 0) -> None:
    """A noisy 'lung' ring phantom (soft tissue ring, lung at -900 HU): soft-kernel noise."""
    rng = np.random.default_rng(seed)
    info = SeriesInfo(uid("study", seed), uid("series", seed), uid("for", seed), "RING^TEST",
                      "RING1", kernel, 7, "ring")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        img = np.full((256, 256), -900.0)
        for edge in (np.s_[:, :40], np.s_[:, -40:], np.s_[:40, :], np.s_[-40:, :]):
            img[edge] = 40.0
        img += rng.normal(0.0, 25.0, img.shape)
        ds = ct_image(info, img, i, float(i), uid("img", seed, i))
        ds.save_as(folder / f"IM{i}", enforce_file_format=True)


class StoredFilter(FilterEngine):
    """The filter, its output clipped at -1024 HU as stored images are (a true sharp
    reconstruction of a noisy lung is clipped so, and a model trained on stored images
    learns it): the floor raises the mean of noisy lung, which the check must not judge."""

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68) -> np.ndarray:
        return np.maximum(super().convert(hu, source, target, pixel_mm), -1024.0)


def test_the_check_takes_its_noise_ratio_from_the_engines_table(tmp_path: Path) -> None:
    """A site table with its own kernel names (B30f's and B70f's responses renamed): the
    soft -> sharp conversion of a noisy lung passes, judged with the site table's ratio (with
    the built-in table's, None, the floor's lift of the noisy lung was judged as bias)."""
    table = builtin_table()
    site = [{**d, "name": {"B30f": "SITE_SOFT", "B70f": "SITE_SHARP"}[d["name"]]}
            for d in responses_to_json({k: table[k] for k in ("B30f", "B70f")})]
    path = tmp_path / "site.json"
    path.write_text(json.dumps(site))
    _ring_series(tmp_path / "in", "SITE_SOFT")
    engine = StoredFilter(load_response_table(path))
    report = run_convert(tmp_path / "in", tmp_path / "out", lambda: engine, engine.domains,
                         ConvertOptions(target="SITE_SHARP"), owner="the filter")
    [result] = report.results
    assert result.status == "converted", result.reason
    check = result.hu_check
    want = KernelTable.load(path).expected_noise_ratio("SITE_SOFT", "SITE_SHARP", 2.5)
    assert want is not None and want > 5.0
    assert check is not None and check["passed"]
    assert check["expected_noise_ratio"] == pytest.approx(want, abs=1e-3)


def test_a_calibrations_measured_noise_ratio_is_the_expected_one() -> None:
    responses = builtin_table()
    soft = type(responses["B30f"])(**{**responses["B30f"].__dict__, "name": "S",
                                      "tabulated": ((0.0, 1.0), (5.0, 0.5)),
                                      "noise_ratio": (1.0, 1.0), "noise_reference": "S"})
    sharp = type(soft)(**{**soft.__dict__, "name": "H", "tabulated": ((0.0, 1.0), (5.0, 1.5)),
                          "noise_ratio": (3.1, 3.4)})
    table = KernelTable({"S": soft, "H": sharp})
    assert table.expected_noise_ratio("S", "H") == pytest.approx(3.25)
    assert table.expected_noise_ratio("H", "S") == pytest.approx(1 / 3.25)


def test_kernel_response_and_vendor_kernels_have_no_import_cycle() -> None:
    code = ("import sys, kernelconv.vendor_kernels as v; "
            "assert 'kernelconv.kernel_response' not in sys.modules, 'cycle'")
    subprocess.run([sys.executable, "-c", code], check=True)
    source = (ROOT / "kernelconv" / "kernel_response.py").read_text()
    assert "    from kernelconv.vendor_kernels" not in source  # no import hidden in a function


# ------------------------------------------------------------------ 6. pixel spacing

def test_non_square_pixels_are_refused_with_the_reason(tmp_path: Path, capsys) -> None:
    def stretch(ds: Dataset, i: int) -> None:
        ds.PixelSpacing = [0.7, 0.9]

    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2, edit=stretch)
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--method", "filter"], capsys)
    assert code == 1
    assert "non-square pixels (0.7 x 0.9 mm)" in err


@pytest.mark.parametrize(("diameter", "expect"), [(None, "0.684 mm assumed (350 mm"),
                                                   (256.0, "2.000 mm assumed from "
                                                           "ReconstructionDiameter 256 mm / "
                                                           "128 columns")])
def test_a_missing_pixel_spacing_is_a_warning_in_the_report(
        tmp_path: Path, capsys, diameter: float | None, expect: str) -> None:
    def strip(ds: Dataset, i: int) -> None:
        del ds.PixelSpacing
        ds.ReconstructionDiameter = diameter
        if diameter is None:
            del ds.ReconstructionDiameter

    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2, edit=strip)  # 128 columns
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--method", "filter"], capsys)
    assert code == 0, err
    [series] = _report(tmp_path / "out")["series"]
    assert any(expect in w for w in series["warnings"]), series["warnings"]


# ------------------------------------------------------------------ 9. what a user hit

def test_a_kernel_map_target_is_written_as_asked(tmp_path: Path, capsys) -> None:
    """--to FC13 through the vendor kernel map: the output says FC13 (what was asked), the
    derivation says which model kernels produced it, and evaluate finds its reference."""
    phantom = ROOT / "examples" / "data" / "canon-phantom" / "phantom2"
    out = tmp_path / "out"
    code, _, err = run_cli(["convert", phantom / "FC51", out, "--to", "FC13", "--kernel-map",
                            ROOT / "examples" / "vendor-kernel-map.txt"], capsys)
    assert code == 0, err
    [series] = _report(out)["series"]
    assert series["target_kernel"] == "FC13" and series["target_domain"] == "B30f"
    for ds in read_all(output_series_dirs(out)[0]):
        assert ds.ConvolutionKernel == "FC13"
        assert "FC51 -> FC13" in ds.DerivationDescription
        assert "(converted as B50f -> B30f)" in ds.DerivationDescription
    code, _, err = run_cli(["evaluate", "--pred", out, "--ref", phantom / "FC13", "--out",
                            tmp_path / "eval"], capsys)
    assert code == 0, err


def test_an_unknown_from_is_a_usage_error(tmp_path: Path, capsys) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2)
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--method", "filter", "--from", "XYZ9"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert "--from XYZ9: not one of the kernels of the filter" in err
    assert "give --from" not in err
    assert not (tmp_path / "out").exists()


class SmoothingEngine(FilterEngine):
    """Converts soft -> sharp by smoothing: the wrong direction for the noise."""

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68) -> np.ndarray:
        return super().convert(hu, target, source, pixel_mm)


def test_noise_that_moves_the_wrong_way_is_a_warning(tmp_path: Path) -> None:
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 2, kernel="B30f")
    engine = SmoothingEngine()
    report = _run(engine, tmp_path / "in", tmp_path / "out", "B70f")
    [result] = report.results
    assert result.status == "converted"
    assert any("smoother than its input although the target kernel is sharper" in w
               for w in result.warnings), result.warnings
    engine2 = FilterEngine()  # the right direction: no warning
    report = _run(engine2, tmp_path / "in", tmp_path / "ok", "B70f")
    assert not any("smoother" in w for w in report.results[0].warnings)


class InterruptingEngine(FilterEngine):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68) -> np.ndarray:
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        return super().convert(hu, source, target, pixel_mm)


def test_an_interrupted_run_writes_its_report(tmp_path: Path) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in" / "a", 1, seed=1)
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in" / "b", 1, seed=2)
    engine = InterruptingEngine()
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_convert(tmp_path / "in", out, lambda: engine, engine.domains,
                    ConvertOptions(target="B30f"), report_path=out / "kernelconv-report.json")
    statuses = [(s["status"], s["reason"]) for s in _report(out)["series"]]
    assert statuses == [("converted", ""), ("failed", "interrupted")]
    assert len(output_series_dirs(out)) == 1  # the interrupted series left nothing


def test_a_dry_run_shows_the_output_folder(tmp_path: Path) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2)
    engine = FilterEngine()
    report = run_convert(tmp_path / "in", tmp_path / "out", lambda: engine, engine.domains,
                         ConvertOptions(target="B30f", dry_run=True))
    [result] = report.results
    assert result.status == "planned" and result.output.startswith(str(tmp_path / "out"))
    assert Path(result.output).name.startswith("B30f_") and not (tmp_path / "out").exists()
