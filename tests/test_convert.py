"""End-to-end `kernelconv convert` on real DICOM files assembled into series."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import (
    dicom_file,
    make_series,
    make_tiny_model,
    output_series_dirs,
    read_all,
    run_cli,
)

from kernelconv.dicom.derived import Derivation, derivation_of, derived_uid
from kernelconv.hu import HU_MAX, HU_MIN
from kernelconv.kernel_response import KernelTable
from kernelconv.modelfile import read_info


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".json"}


@pytest.fixture()
def sharp_series(tmp_path: Path) -> Path:
    """A 6-slice B70f series from the real 512x512 head image 693_UNCR.dcm."""
    src = tmp_path / "in"
    make_series(dicom_file("693_UNCR.dcm"), src / "a", 6, kernel="B70f")
    return src


def test_converts_series_with_derived_tags(sharp_series: Path, tmp_path: Path,
                                           tiny_model: Path, capsys) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        ["convert", sharp_series, out, "--to", "B30f", "--model", tiny_model], capsys)
    assert code == 0, stderr
    dirs = output_series_dirs(out)
    assert len(dirs) == 1
    sources = {ds.SOPInstanceUID: ds for ds in read_all(sharp_series)}
    derived = read_all(dirs[0])
    assert len(derived) == 6
    model_id = read_info(tiny_model).model_id
    src_series = next(iter(sources.values())).SeriesInstanceUID
    # the UIDs name everything that shapes the output: kernels, engine, table, offset
    expected_key = Derivation("B70f", "B30f", "", model_id, True, 1000, "B70f", "B30f",
                              KernelTable.builtin().digest("B70f", "B30f")).key
    for ds in derived:
        ref = ds.SourceImageSequence[0]
        src = sources[ref.ReferencedSOPInstanceUID]
        assert ref.ReferencedSOPClassUID == src.SOPClassUID
        assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        made = derivation_of(ds)
        assert made is not None and made.key == expected_key
        assert ds.SOPInstanceUID == derived_uid("instance", src.SOPInstanceUID, expected_key)
        assert ds.SeriesInstanceUID == derived_uid("series", src_series, expected_key)
        assert ds.SOPInstanceUID != src.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        for kw in ("StudyInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient",
                   "ImageOrientationPatient", "PixelSpacing", "InstanceNumber", "PatientName",
                   "PatientID", "StudyDate", "Rows", "Columns"):
            assert ds.get(kw) == src.get(kw), kw
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert ds.ConvolutionKernel == "B30f"
        assert ds.SeriesDescription.endswith("[B30f kernelconv]")
        assert len(ds.SeriesDescription) <= 64
        assert int(ds.SeriesNumber) == int(src.SeriesNumber) + 1000
        assert "B70f -> B30f" in ds.DerivationDescription
        assert model_id in ds.DerivationDescription
        assert ds.DerivationCodeSequence[0].CodeValue == "113087"  # Smoothing
        eq = ds.ContributingEquipmentSequence[-1]
        assert eq.Manufacturer == "kernelconv"
        assert eq.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
        stored = ds.pixel_array
        pad = stored == ds.PixelPaddingValue  # padding outside the field of view is kept
        assert np.array_equal(pad, src.pixel_array == src.PixelPaddingValue)
        hu = stored[~pad] * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert hu.min() >= HU_MIN and hu.max() <= HU_MAX
        assert ds["SmallestImagePixelValue"].VR == ("SS" if ds.PixelRepresentation else "US")
        assert ds.SmallestImagePixelValue == int(ds.pixel_array.min())
        assert ds.LargestImagePixelValue == int(ds.pixel_array.max())
    report = json.loads((out / "kernelconv-report.json").read_text())
    assert report["series"][0]["status"] == "converted"
    assert report["series"][0]["images"] == 6
    assert "Peter" not in stdout + stderr + json.dumps(report)  # no patient names logged


def test_soft_to_sharp_uses_edge_enhancement_code(tmp_path: Path, tiny_model: Path,
                                                  capsys) -> None:
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 2, kernel="B30f")
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B70f",
                            "--model", tiny_model], capsys)
    assert code == 0, err
    ds = read_all(output_series_dirs(tmp_path / "out")[0])[0]
    assert ds.DerivationCodeSequence[0].CodeValue == "113086"
    assert ds.ConvolutionKernel == "B70f"


def test_rerun_is_idempotent_and_deterministic(sharp_series: Path, tmp_path: Path,
                                               tiny_model: Path, capsys) -> None:
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    for out in (out1, out2):
        code, _, err = run_cli(["convert", sharp_series, out, "--to", "B30f",
                                "--model", tiny_model, "--batch-size", "4"], capsys)
        assert code == 0, err
    assert _digest(out1) == _digest(out2)  # same input, same output bytes
    before = {p: p.stat().st_mtime_ns for p in out1.rglob("*") if p.is_file()}
    code, _, _ = run_cli(["convert", sharp_series, out1, "--to", "B30f", "--model", tiny_model],
                         capsys)
    assert code == 0
    report = json.loads((out1 / "kernelconv-report.json").read_text())
    assert report["series"][0]["status"] == "skipped"
    after = {p: p.stat().st_mtime_ns for p in out1.rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if p.suffix != ".json"} == \
        {p: t for p, t in before.items() if p.suffix != ".json"}
    code, _, _ = run_cli(["convert", sharp_series, out1, "--to", "B30f", "--model", tiny_model,
                          "--overwrite"], capsys)
    assert code == 0
    assert json.loads((out1 / "kernelconv-report.json").read_text())["series"][0]["status"] \
        == "converted"
    assert _digest(out1) == _digest(out2)


def test_resume_converts_only_missing_series(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = tmp_path / "in"
    make_series(dicom_file("693_UNCR.dcm"), src / "one", 2, seed=1)
    make_series(dicom_file("CT_small.dcm"), src / "two", 3, seed=2)
    out = tmp_path / "out"
    assert run_cli(["convert", src, out, "--to", "B30f", "--model", tiny_model], capsys)[0] == 0
    dirs = output_series_dirs(out)
    assert len(dirs) == 2
    shutil.rmtree(dirs[0])  # as if the run had been interrupted before this series finished
    keep = {p: p.stat().st_mtime_ns for p in dirs[1].iterdir()}
    assert run_cli(["convert", src, out, "--to", "B30f", "--model", tiny_model], capsys)[0] == 0
    statuses = sorted(s["status"] for s in
                      json.loads((out / "kernelconv-report.json").read_text())["series"])
    assert statuses == ["converted", "skipped"]
    assert dirs[0].is_dir()
    assert {p: p.stat().st_mtime_ns for p in dirs[1].iterdir()} == keep


def test_batch_size_does_not_change_the_series(sharp_series: Path, tmp_path: Path,
                                               tiny_model: Path, capsys) -> None:
    for bs in ("1", "5"):
        assert run_cli(["convert", sharp_series, tmp_path / bs, "--to", "B30f", "--model",
                        tiny_model, "--batch-size", bs], capsys)[0] == 0
    a = read_all(tmp_path / "1")
    b = read_all(tmp_path / "5")
    assert [d.SOPInstanceUID for d in a] == [d.SOPInstanceUID for d in b]
    for x, y in zip(a, b, strict=True):
        diff = np.abs(x.pixel_array.astype(int) - y.pixel_array.astype(int))
        assert diff.max() <= 1  # batching may change float rounding, never the result


@pytest.mark.parametrize("name", ["bad_sequence.dcm", "explicit_VR-UN.dcm", "693_J2KI.dcm",
                                  "J2K_pixelrep_mismatch.dcm"])
def test_compressed_input_is_decoded_and_written_uncompressed(
        name: str, tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = dicom_file(name)
    ts = pydicom.dcmread(src, stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert ts.is_compressed
    make_series(src, tmp_path / "in", 2, kernel=None)
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--from", "B70f", "--model", tiny_model], capsys)
    assert code == 0, err
    for ds in read_all(output_series_dirs(tmp_path / "out")[0]):
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.pixel_array.shape == (512, 512)
        if name == "693_J2KI.dcm":  # a lossy source stays marked lossy
            assert ds.LossyImageCompression == "01"


def test_bad_sequence_keeps_siemens_12_bit_encoding(tmp_path: Path, tiny_model: Path,
                                                    capsys) -> None:
    # Siemens: BitsStored 12, unsigned, intercept -1024 holds exactly [-1024, 3071]
    make_series(dicom_file("bad_sequence.dcm"), tmp_path / "in", 1, kernel=None)
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B50f",
                            "--model", tiny_model], capsys)  # B30s is an alias of B30f
    assert code == 0, err
    ds = read_all(output_series_dirs(tmp_path / "out")[0])[0]
    assert (ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (12, 11, 0)
    assert float(ds.RescaleIntercept) == -1024.0
    assert ds["LargestImagePixelValue"].VR == "US"
    assert ds.pixel_array.max() <= 4095


def test_non_square_and_odd_sizes_keep_their_matrix(tmp_path: Path, tiny_model: Path,
                                                    capsys) -> None:
    def crop(ds, i):
        arr = ds.pixel_array[:301, :203].copy()
        ds.Rows, ds.Columns = arr.shape
        ds.PixelData = arr.tobytes()

    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 2, edit=crop)
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--model", tiny_model], capsys)
    assert code == 0, err
    for ds in read_all(output_series_dirs(tmp_path / "out")[0]):
        assert ds.pixel_array.shape == (301, 203)


def test_unknown_kernel_fails_that_series_only(tmp_path: Path, tiny_model: Path,
                                               capsys) -> None:
    """Without its fingerprint (--kernel-check off) an unknown kernel fails its series."""
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in" / "ok", 2, kernel="B70f", seed=1)
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in" / "odd", 2, kernel="XQ17", seed=2)
    code, out, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                              "--model", tiny_model, "--kernel-check", "off"], capsys)
    assert code == 1
    assert "XQ17" in err and "B30f, B50f, B70f" in err
    assert "Traceback" not in out + err
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    assert sorted(s["status"] for s in report["series"]) == ["converted", "failed"]
    assert len(output_series_dirs(tmp_path / "out")) == 1


def test_kernel_map_file_adds_aliases(tmp_path: Path, tiny_model: Path, capsys) -> None:
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 2, kernel="FC51")
    kmap = tmp_path / "site.txt"
    kmap.write_text("# Canon sharp lung kernel, by our own measurement\nFC51 = B70f\n")
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--model", tiny_model, "--kernel-map", kmap], capsys)
    assert code == 0, err


def test_series_already_at_target_is_skipped(tmp_path: Path, tiny_model: Path, capsys) -> None:
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 2, kernel="B30s")
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--model", tiny_model], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    assert report["series"][0]["status"] == "skipped"
    assert "already at the target" in report["series"][0]["reason"]
    assert output_series_dirs(tmp_path / "out") == []


def test_truncated_file_fails_series_without_partial_output(tmp_path: Path, tiny_model: Path,
                                                            capsys) -> None:
    paths = make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 4)
    victim = paths[2]
    victim.write_bytes(victim.read_bytes()[:-100_000])
    before = {p: p.read_bytes() for p in paths}
    code, out, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                              "--model", tiny_model], capsys)
    assert code == 1
    assert victim.name in err
    assert "Traceback" not in out + err
    assert output_series_dirs(tmp_path / "out") == []
    assert not any(p.name.startswith(".kernelconv") for p in (tmp_path / "out").rglob("*"))
    assert {p: p.read_bytes() for p in paths} == before  # the input is untouched


def test_missing_pixel_data_fails_series(tmp_path: Path, tiny_model: Path, capsys) -> None:
    def drop(ds, i):
        if i == 1:
            del ds.PixelData

    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 3, edit=drop)
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--model", tiny_model], capsys)
    assert code == 1
    assert "no Pixel Data" in err
    assert output_series_dirs(tmp_path / "out") == []


def test_junk_empty_and_dicomdir_are_skipped_with_reasons(tmp_path: Path, tiny_model: Path,
                                                         capsys) -> None:
    src = tmp_path / "in"
    make_series(dicom_file("693_UNCR.dcm"), src, 2)
    (src / "empty.dcm").write_bytes(b"")
    (src / "notes.txt").write_text("not dicom")
    (src / "junk").write_bytes(bytes(range(256)) * 10)
    shutil.copy(dicom_file("DICOMDIR"), src / "DICOMDIR")
    shutil.copy(dicom_file("MR_small.dcm"), src / "mr.dcm")
    code, _, err = run_cli(["convert", src, tmp_path / "out", "--to", "B30f", "--model",
                            tiny_model], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped_files"]}
    assert reasons["empty.dcm"] == "empty file"
    assert reasons["notes.txt"] == "not a DICOM file"
    assert reasons["junk"] == "not a DICOM file"
    assert "DICOMDIR" in reasons["DICOMDIR"]
    assert any("not CT (MR Image Storage" in r for r in reasons.values())
    assert report["series"][0]["status"] == "converted"


def test_path_traversal_in_tags_stays_inside_output(tmp_path: Path, tiny_model: Path,
                                                    capsys) -> None:
    def evil(ds, i):
        ds.StudyInstanceUID = "../../../../evil"
        ds.SeriesDescription = "../../etc/passwd"

    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 2, edit=evil)
    out = tmp_path / "sub" / "out"
    code, _, err = run_cli(["convert", tmp_path / "in", out, "--to", "B30f", "--model",
                            tiny_model], capsys)
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "in" not in p.parts[-3:]]
    for p in written:
        if p.is_relative_to(tmp_path / "in") or p.is_relative_to(tmp_path / "models"):
            continue
        assert p.resolve().is_relative_to(out.resolve()), p
    assert not (tmp_path / "evil").exists()


def test_dry_run_writes_nothing(sharp_series: Path, tmp_path: Path, tiny_model: Path,
                                capsys) -> None:
    code, out, _ = run_cli(["convert", sharp_series, tmp_path / "out", "--to", "B30f",
                            "--model", tiny_model, "--dry-run"], capsys)
    assert code == 0
    assert "planned" in out
    assert not (tmp_path / "out").exists()


def test_preview_png_is_written(sharp_series: Path, tmp_path: Path, tiny_model: Path,
                                capsys) -> None:
    from PIL import Image

    png = tmp_path / "preview.png"
    code, _, err = run_cli(["convert", sharp_series, tmp_path / "out", "--to", "B30f",
                            "--model", tiny_model, "--preview", png], capsys)
    assert code == 0, err
    img = Image.open(png)
    assert img.format == "PNG" and img.size[0] > 3 * 256  # slices, then full-resolution zooms
    assert np.asarray(img).std() > 10  # not blank


def test_no_model_says_how_to_get_one(sharp_series: Path, tmp_path: Path, capsys,
                                      monkeypatch) -> None:
    monkeypatch.setenv("KERNELCONV_MODELS", str(tmp_path / "none"))
    monkeypatch.delenv("KERNELCONV_DEFAULT_MODEL", raising=False)
    import kernelconv.modelfile as mf

    monkeypatch.setattr(mf, "bundled_models_dir", lambda: None)
    code, out, err = run_cli(["convert", sharp_series, tmp_path / "out", "--to", "B30f"],
                             capsys)
    assert code == 3
    assert "no kernel-conversion model is installed" in err and str(tmp_path / "none") in err
    assert "--model" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_corrupt_model_is_refused(sharp_series: Path, tmp_path: Path, capsys) -> None:
    model = make_tiny_model(tmp_path / "m.safetensors")
    blob = bytearray(model.read_bytes())
    blob[-10] ^= 0xFF
    model.write_bytes(bytes(blob))
    code, _, err = run_cli(["convert", sharp_series, tmp_path / "out", "--to", "B30f",
                            "--model", model], capsys)
    assert code == 3
    assert "checksum mismatch" in err
    assert not (tmp_path / "out").exists()


def test_missing_input_and_unknown_target(tmp_path: Path, tiny_model: Path, capsys) -> None:
    code, _, err = run_cli(["convert", tmp_path / "nope", tmp_path / "out", "--to", "B30f",
                            "--model", tiny_model], capsys)
    assert code == 4 and "no such file" in err
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 1)
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B99x",
                            "--model", tiny_model], capsys)
    assert code == 2 and "--to B99x" in err and "B30f, B50f, B70f" in err


def test_input_files_are_never_modified(sharp_series: Path, tmp_path: Path, tiny_model: Path,
                                        capsys) -> None:
    before = _digest(sharp_series)
    mtimes = {p: p.stat().st_mtime_ns for p in sharp_series.rglob("*")}
    assert run_cli(["convert", sharp_series, tmp_path / "out", "--to", "B30f", "--model",
                    tiny_model], capsys)[0] == 0
    assert _digest(sharp_series) == before
    assert {p: p.stat().st_mtime_ns for p in sharp_series.rglob("*")} == mtimes


def test_output_inside_input_is_not_read_back(sharp_series: Path, tiny_model: Path,
                                              capsys) -> None:
    out = sharp_series / "converted"
    for _ in range(2):
        code, _, err = run_cli(["convert", sharp_series, out, "--to", "B30f", "--model",
                                tiny_model], capsys)
        assert code == 0, err
    report = json.loads((out / "kernelconv-report.json").read_text())
    assert len(report["series"]) == 1  # the derived series was not picked up as input


def test_series_kernelconv_derived_is_skipped_unless_asked(tmp_path: Path, capsys) -> None:
    src = tmp_path / "archive"
    make_series(dicom_file("693_UNCR.dcm"), src / "original", 2, kernel="B70f")
    code, _, err = run_cli(["convert", src, src / "converted", "--to", "B30f", "--method",
                            "filter"], capsys)
    assert code == 0, err
    # the archive now holds the B70f original and kernelconv's B30f; ask for B70f again
    code, _, err = run_cli(["convert", src, tmp_path / "out", "--to", "B70f", "--method",
                            "filter"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    by_kernel = {r["source_kernel"]: r for r in report["series"]}
    assert by_kernel["B70f"]["reason"].startswith("already at the target")
    assert by_kernel["B30f"]["status"] == "skipped"
    assert by_kernel["B30f"]["reason"].startswith("derived by kernelconv (B70f -> B30f)")
    assert output_series_dirs(tmp_path / "out") == []
    # (the relabelled head image is softer than its "B70f", so its B30f conversion is softer
    # than B30f: its fingerprint says so, and --kernel-check warn converts it anyway)
    code, _, err = run_cli(["convert", src, tmp_path / "again", "--to", "B70f", "--method",
                            "filter", "--include-derived", "--kernel-check", "warn"], capsys)
    assert code == 0, err
    [converted] = output_series_dirs(tmp_path / "again")
    assert all("B30f -> B70f" in ds.DerivationDescription for ds in read_all(converted))
