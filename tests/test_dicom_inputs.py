"""Inputs in old encodings: Explicit VR Big Endian files and bare datasets with no preamble,
"DICM" or file meta (ACR-NEMA-style exports) convert into Part-10 Explicit VR Little Endian;
files that only a forced read could take for DICOM are refused as junk."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import shutil
import struct
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import (
    ct5n_dir,
    dciodvfy_errors,
    dcmconv,
    dicom_file,
    make_series,
    make_tiny_model,
    output_series_dirs,
    run_cli,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence

from kernelconv.dicom.dataset import read_file
from kernelconv.dicom.derived import IMPLEMENTATION_CLASS_UID, DerivedBy, derivation_of
from kernelconv.dicom.discovery import discover
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.modelfile import read_info

EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _big_endian_copies(files: list[Path], folder: Path) -> list[Path]:
    """dcmtk's Explicit VR Big Endian copy of each file (same names)."""
    folder.mkdir(parents=True)
    out = []
    for f in files:
        dcmconv("+tb", f, folder / f.name)
        assert pydicom.dcmread(folder / f.name).file_meta.TransferSyntaxUID == EXPLICIT_BE
        out.append(folder / f.name)
    return out


def _bare_copy(src: Path, dst: Path) -> None:
    """``src`` written by pydicom as a bare Implicit VR Little Endian dataset: no preamble, no
    "DICM", no file meta."""
    ds = pydicom.dcmread(src)
    del ds.file_meta
    ds.preamble = None
    pydicom.dcmwrite(dst, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)


def _convert(src: Path, out: Path, capsys: pytest.CaptureFixture[str], *how: str) -> list[Path]:
    code, _, err = run_cli(["convert", src, out, "--to", "B30f", *how], capsys)
    assert code == 0, err
    (series,) = output_series_dirs(out)
    return sorted(series.iterdir())


def _hu_by_source(files: list[Path]) -> dict[str, np.ndarray]:
    """The HU image of each derived file, keyed by its source's SOPInstanceUID."""
    out = {}
    for f in files:
        ds = pydicom.dcmread(f)
        uid = str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)
        out[uid] = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return out


def _source_hu(files: list[Path]) -> dict[str, np.ndarray]:
    out = {}
    for f in files:
        ds = pydicom.dcmread(f)
        out[str(ds.SOPInstanceUID)] = (ds.pixel_array * float(ds.RescaleSlope)
                                       + float(ds.RescaleIntercept))
    return out


def _assert_same_hu(be_files: list[Path], le_files: list[Path], le_source: list[Path]) -> None:
    be, le, src = _hu_by_source(be_files), _hu_by_source(le_files), _source_hu(le_source)
    assert set(be) == set(le) == set(src) and len(be) == len(le_source)
    for uid in le:
        assert be[uid].shape == le[uid].shape
        assert np.abs(be[uid] - le[uid]).max() <= 1.0
        assert np.abs(le[uid] - src[uid]).max() > 10.0  # the conversion did change the image


# ---------------------------------------------------------------------------- big endian

@pytest.mark.tools
def test_big_endian_series_converts_like_its_little_endian_original_with_filter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    le = make_series(dicom_file("CT_small.dcm"), tmp_path / "le", 3, kernel="B70f")
    _big_endian_copies(le, tmp_path / "be")
    out_le = _convert(tmp_path / "le", tmp_path / "out_le", capsys, "--method", "filter")
    out_be = _convert(tmp_path / "be", tmp_path / "out_be", capsys, "--method", "filter")
    _assert_same_hu(out_be, out_le, le)
    for f in out_be:
        assert pydicom.dcmread(f).file_meta.TransferSyntaxUID == EXPLICIT_LE
    # nothing in the output depends on the input's byte order
    assert [f.read_bytes() for f in out_be] == [f.read_bytes() for f in out_le]


@pytest.mark.tools
def test_big_endian_series_converts_like_its_little_endian_original_with_a_model(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    le = make_series(dicom_file("CT_small.dcm"), tmp_path / "le", 3, kernel="B70f", seed=3)
    _big_endian_copies(le, tmp_path / "be")
    out_le = _convert(tmp_path / "le", tmp_path / "out_le", capsys, "--model", tiny_model)
    out_be = _convert(tmp_path / "be", tmp_path / "out_be", capsys, "--model", tiny_model)
    _assert_same_hu(out_be, out_le, le)
    for f in out_be:
        assert pydicom.dcmread(f).file_meta.TransferSyntaxUID == EXPLICIT_LE


@pytest.mark.tools
@pytest.mark.parametrize("source", ["CT_small", "CT5N"])
def test_big_endian_output_adds_no_dciodvfy_errors(
    source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if source == "CT5N":
        files, how = sorted(ct5n_dir().iterdir()), ["--from", "B70f"]
    else:
        files, how = make_series(dicom_file("CT_small.dcm"), tmp_path / "le", 2), []
    be = _big_endian_copies(files, tmp_path / "be")
    by_uid = {str(pydicom.dcmread(f).SOPInstanceUID): f for f in be}
    out = _convert(tmp_path / "be", tmp_path / "out", capsys, "--method", "filter", *how)
    assert len(out) == len(files)
    for f in out:
        src = by_uid[str(pydicom.dcmread(f).SourceImageSequence[0].ReferencedSOPInstanceUID)]
        new = dciodvfy_errors(f) - dciodvfy_errors(src)
        assert not new, f"{f.name} (from {src.name}): {sorted(new)}"


def _binary_values(ds: Dataset, i: int) -> None:
    """Values of the binary VRs, one and two sequences deep, that byte order changes."""
    lut = Dataset()
    lut.LUTDescriptor = [3, 0, 16]
    lut.add_new(0x00283006, "OW", struct.pack("<3H", 0, 1000, 4095))  # LUTData
    ds.VOILUTSequence = Sequence([lut])
    inner = Dataset()
    inner.add_new(0x0072007A, "US", 4095)  # SelectorUSValue
    inner.add_new(0x0072007E, "SS", -1024)  # SelectorSSValue
    inner.add_new(0x00720076, "FL", 0.25)  # SelectorFLValue
    inner.add_new(0x00720074, "FD", -2.5)  # SelectorFDValue
    inner.add_new(0x00720069, "OW", struct.pack("<2H", 1, 0x0102))  # SelectorOWValue
    inner.add_new(0x00720067, "OF", struct.pack("<2f", 1.5, -3.0))  # SelectorOFValue
    inner.add_new(0x00720075, "OL", struct.pack("<2L", 7, 0x01020304))  # SelectorOLValue
    inner.add_new(0x00720073, "OD", struct.pack("<d", 6.25))  # SelectorODValue
    outer = Dataset()
    outer.ImageSetSelectorSequence = Sequence([inner])
    ds.ImageSetSelectorSequence = Sequence([outer])


@pytest.mark.tools
def test_big_endian_values_in_nested_sequences_are_written_little_endian(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    le = make_series(dicom_file("CT_small.dcm"), tmp_path / "le", 2, edit=_binary_values)
    _big_endian_copies(le, tmp_path / "be")
    out_be = _convert(tmp_path / "be", tmp_path / "out_be", capsys, "--method", "filter")
    out_le = _convert(tmp_path / "le", tmp_path / "out_le", capsys, "--method", "filter")
    for f in out_be:
        ds = pydicom.dcmread(f)
        assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
        lut = ds.VOILUTSequence[0]
        assert list(lut.LUTDescriptor) == [3, 0, 16]
        assert lut["LUTData"].VR == "OW"
        assert lut.LUTData == struct.pack("<3H", 0, 1000, 4095)
        inner = ds.ImageSetSelectorSequence[0].ImageSetSelectorSequence[0]
        assert inner.SelectorUSValue == 4095
        assert inner.SelectorSSValue == -1024
        assert inner.SelectorFLValue == 0.25
        assert inner.SelectorFDValue == -2.5
        assert inner.SelectorOWValue == struct.pack("<2H", 1, 0x0102)
        assert inner.SelectorOFValue == struct.pack("<2f", 1.5, -3.0)
        assert inner.SelectorOLValue == struct.pack("<2L", 7, 0x01020304)
        assert inner.SelectorODValue == struct.pack("<d", 6.25)
    assert [f.read_bytes() for f in out_be] == [f.read_bytes() for f in out_le]


# ---------------------------------------------------------------------------- bare datasets

def _bare_with_dcmconv(syntax: str) -> Callable[[Path, Path], None]:
    def make(src: Path, dst: Path) -> None:
        dcmconv(syntax, "-F", src, dst)  # -F: write the data set without file meta

    return make


BARE_WRITERS: dict[str, Callable[[Path, Path], None]] = {
    "pydicom implicit VR LE": _bare_copy,
    "dcmconv implicit VR LE": _bare_with_dcmconv("+ti"),
    "dcmconv explicit VR LE": _bare_with_dcmconv("+te"),
    "dcmconv explicit VR BE": _bare_with_dcmconv("+tb"),
}


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.tools
@pytest.mark.parametrize("writer", sorted(BARE_WRITERS))
def test_bare_dataset_without_preamble_or_meta_converts_to_part10(
    writer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    part10 = make_series(dicom_file("CT_small.dcm"), tmp_path / "part10", 3, kernel="B70f")
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in part10:
        BARE_WRITERS[writer](f, bare / f.name)
        head = (bare / f.name).read_bytes()[:132]
        assert head[:2] == b"\x08\x00" or head[:2] == b"\x00\x08"  # group 0008 first
        assert head[128:132] != b"DICM"
        with pytest.raises(InvalidDicomError):
            pydicom.dcmread(bare / f.name)  # not a Part-10 file
    (series,) = discover(bare).series
    assert series.n_images == 3 and series.error is None and series.kernel == "B70f"
    before = _digest(bare)

    out_bare = _convert(bare, tmp_path / "out_bare", capsys, "--method", "filter")
    out_part10 = _convert(tmp_path / "part10", tmp_path / "out_part10", capsys, "--method",
                          "filter")
    assert _digest(bare) == before  # the input is untouched
    for f in out_bare:
        data = f.read_bytes()
        assert data[:128] == b"\x00" * 128 and data[128:132] == b"DICM"
        ds = pydicom.dcmread(f)
        meta = ds.file_meta
        assert meta.TransferSyntaxUID == EXPLICIT_LE
        assert meta.MediaStorageSOPClassUID == CT_IMAGE == ds.SOPClassUID
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert meta.FileMetaInformationVersion == b"\x00\x01"
    # the same images and headers as a conversion of the Part-10 originals
    assert [f.read_bytes() for f in out_bare] == [f.read_bytes() for f in out_part10]
    by_uid = {str(pydicom.dcmread(f).SOPInstanceUID): f for f in part10}
    for f in out_bare:
        src = by_uid[str(pydicom.dcmread(f).SourceImageSequence[0].ReferencedSOPInstanceUID)]
        new = dciodvfy_errors(f) - dciodvfy_errors(src)
        assert not new, f"{f.name} (from {src.name}): {sorted(new)}"


# ---------------------------------------------------------------------------- junk

@lru_cache(maxsize=1)
def _bare_ct_bytes() -> bytes:
    """CT_small as a bare implicit VR LE dataset whose last element is the pixel data."""
    from pydicom.filebase import DicomBytesIO

    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    del ds[0xFFFCFFFC]  # DataSetTrailingPadding: after it, a cut file would still be whole
    del ds.file_meta
    ds.preamble = None
    buf = DicomBytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    data = buf.getvalue()
    assert data.endswith(ds.PixelData)
    return data


def _write_junk(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, size in [(1, 1), (2, 7), (3, 127), (4, 128), (5, 132), (6, 133), (7, 1024),
                       (8, 65536)]:
        (folder / f"random-{size}").write_bytes(random.Random(seed).randbytes(size))
    garbage = random.Random(9).randbytes(4000)
    (folder / "notes.txt").write_text("CT protocol notes\nkernel B30f, 1 mm\n" * 50)
    shutil.copy(Path(__file__).parents[1] / "docs" / "img" / "mtf.png", folder / "figure.png")
    # a plausible first element, (0008,0005) SpecificCharacterSet, then garbage
    (folder / "charset-then-garbage").write_bytes(
        struct.pack("<HHI", 0x0008, 0x0005, 10) + b"ISO_IR 100" + garbage)
    (folder / "explicit-charset-then-garbage").write_bytes(
        struct.pack("<HH2sH", 0x0008, 0x0005, b"CS", 10) + b"ISO_IR 100" + garbage)
    # (0008,0016) SOPClassUID = CT Image Storage, then garbage
    (folder / "ct-class-then-garbage").write_bytes(
        struct.pack("<HHI", 0x0008, 0x0016, 26) + CT_IMAGE.encode() + b"\0" + garbage)
    bare = _bare_ct_bytes()
    (folder / "bare-ct-cut-in-pixels").write_bytes(bare[:len(bare) - 5000])
    (folder / "bare-ct-cut-in-header").write_bytes(bare[:700])
    return sorted(p.name for p in folder.iterdir())


def test_junk_files_are_skipped_as_not_dicom_and_never_become_a_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = _write_junk(tmp_path / "in")
    found = discover(tmp_path / "in")
    assert found.series == []
    assert {Path(s.path).name: s.reason for s in found.skipped} == {
        name: "not a DICOM file" for name in names}
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--method", "filter"], capsys)
    assert code == 4
    assert "no CT series found" in err and f"{len(names)} file(s)" in err
    assert not (tmp_path / "out").exists() or output_series_dirs(tmp_path / "out") == []


def test_whole_bare_ct_is_read_and_a_cut_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bare"
    data = _bare_ct_bytes()
    path.write_bytes(data)
    assert read_file(path).SOPClassUID == CT_IMAGE
    assert read_file(path, header_only=True).Rows == 128
    path.write_bytes(data[:-1])
    for header_only in (False, True):
        with pytest.raises(InvalidDicomError, match="not a DICOM file"):
            read_file(path, header_only=header_only)


JUNK_SETTINGS = settings(max_examples=150, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])
#: pydicom warns about the garbage it meets (unknown character sets, odd VRs); expected here
QUIET_PYDICOM = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")


@QUIET_PYDICOM
@JUNK_SETTINGS
@given(prefix=st.sampled_from([b"", struct.pack("<HHI", 8, 5, 10) + b"ISO_IR 100",
                               struct.pack("<HHI", 8, 0x16, 26) + CT_IMAGE.encode() + b"\0"]),
       data=st.binary(min_size=1, max_size=3000))
def test_arbitrary_bytes_are_never_read_as_dicom(
    prefix: bytes, data: bytes, tmp_path: Path
) -> None:
    content = prefix + data
    assume(content[128:132] != b"DICM")
    path = tmp_path / "junk"
    path.write_bytes(content)
    for header_only in (False, True):
        with pytest.raises(InvalidDicomError, match="not a DICOM file"):
            read_file(path, header_only=header_only)


@QUIET_PYDICOM
@JUNK_SETTINGS
@given(data=st.data())
def test_a_bare_ct_cut_anywhere_is_never_read_as_dicom(data: st.DataObject,
                                                         tmp_path: Path) -> None:
    whole = _bare_ct_bytes()
    cut = data.draw(st.integers(1, len(whole) - 1))
    path = tmp_path / "cut"
    path.write_bytes(whole[:cut])
    for header_only in (False, True):
        with pytest.raises(InvalidDicomError, match="not a DICOM file"):
            read_file(path, header_only=header_only)


# ---------------------------------------------------------------------------- derivation_of

def test_derivation_of_recognises_kernelconv_output_and_not_its_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2, kernel="B70f")
    out = _convert(tmp_path / "in", tmp_path / "out", capsys, "--method", "filter")
    expected = DerivedBy("B70f", "B30f", FilterEngine().method_id)
    (series,) = discover(tmp_path / "out").series
    made = series.derived_by_kernelconv
    assert made is not None and made.key is not None and len(made.key) == 16
    assert dataclasses.replace(made, key=None) == expected
    assert [derivation_of(pydicom.dcmread(f)) for f in out] == [made, made]
    (source,) = discover(tmp_path / "in").series
    assert source.derived_by_kernelconv is None


def test_derivation_of_a_series_converted_twice_is_the_last_conversion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2, kernel="B70f")
    _convert(tmp_path / "in", tmp_path / "out", capsys, "--method", "filter")
    code, _, err = run_cli(["convert", tmp_path / "out", tmp_path / "again", "--to", "B50f",
                            "--method", "filter", "--include-derived"], capsys)
    assert code == 0, err
    (series,) = discover(tmp_path / "again").series
    made = series.derived_by_kernelconv
    assert made is not None and made.key is not None
    assert dataclasses.replace(made, key=None) == DerivedBy("B30f", "B50f",
                                                            FilterEngine().method_id)
    first = pydicom.dcmread(series.slices[0].path)
    assert [item.Manufacturer for item in first.ContributingEquipmentSequence][-2:] == [
        "kernelconv", "kernelconv"]


def test_derivation_of_is_none_for_images_derived_by_other_software() -> None:
    other = pydicom.dcmread(dicom_file("eCT_Supplemental.dcm"))  # a real DERIVED CT
    assert str(other.ImageType[0]) == "DERIVED"
    assert derivation_of(other) is None

    mimic = pydicom.dcmread(dicom_file("CT_small.dcm"))
    mimic.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    mimic.DerivationDescription = "CT reconstruction kernel conversion B70f -> B30f by kernelconv"
    equipment = Dataset()
    equipment.Manufacturer = "Other Vendor"
    equipment.ContributionDescription = "kernel conversion B70f -> B30f (their-tool)"
    mimic.ContributingEquipmentSequence = Sequence([equipment])
    assert derivation_of(mimic) is None  # the words alone do not make it kernelconv's
    equipment.Manufacturer = "kernelconv"
    assert derivation_of(mimic) == DerivedBy("B70f", "B30f", "their-tool")
    mimic.ImageType = "DERIVED"  # one value: pydicom gives a str, not a list
    assert derivation_of(mimic) == DerivedBy("B70f", "B30f", "their-tool")
    mimic.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert derivation_of(mimic) is None  # value 1 must be DERIVED
    mimic.ImageType = "DISPLAY"  # a str starting with "D" is not DERIVED
    assert derivation_of(mimic) is None


def test_derivation_of_reads_a_long_model_id_whole_and_a_cut_description_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_tiny_model(tmp_path / "long.safetensors",
                            name="site-chest-ct-fine-tuned-2024-very-long-model-name")
    model_id = read_info(model).model_id
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 1, kernel="B70f")
    (f,) = _convert(tmp_path / "in", tmp_path / "out", capsys, "--model", model)
    ds = pydicom.dcmread(f)
    contribution = str(ds.ContributingEquipmentSequence[-1].ContributionDescription)
    assert len(contribution) > 64  # ST holds it whole
    made = derivation_of(ds)
    assert made is not None and made.key is not None
    assert dataclasses.replace(made, key=None) == DerivedBy("B70f", "B30f", model_id)
    # a file written when the description was cut at 64 characters: the kernels remain
    ds.ContributingEquipmentSequence[-1].ContributionDescription = contribution[:64]
    assert derivation_of(ds) == DerivedBy("B70f", "B30f", None)
