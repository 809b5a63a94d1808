"""Inputs in old encodings: Explicit VR Big Endian files and bare datasets with no preamble,
"DICM" or file meta (ACR-NEMA-style exports) convert into Part-10 Explicit VR Little Endian;
files that only a forced read could take for DICOM are refused as junk."""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pydicom
import pytest
from helpers import (
    dciodvfy_errors,
    dcmconv,
    dicom_file,
    make_series,
    output_series_dirs,
    run_cli,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom.errors import InvalidDicomError

from kernelconv.dicom.dataset import read_file
from kernelconv.dicom.derived import IMPLEMENTATION_CLASS_UID
from kernelconv.dicom.discovery import discover

EXPLICIT_LE = "1.2.840.10008.1.2.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


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


# ---------------------------------------------------------------------------- bare datasets

def _bare_with_dcmconv(syntax: str) -> Callable[[Path, Path], None]:
    def make(src: Path, dst: Path) -> None:
        dcmconv(syntax, "-F", src, dst)  # -F: write the data set without file meta

    return make


BARE_WRITERS: dict[str, Callable[[Path, Path], None]] = {
    "pydicom implicit VR LE": _bare_copy,
    "dcmconv implicit VR LE": _bare_with_dcmconv("+ti"),
    "dcmconv explicit VR LE": _bare_with_dcmconv("+te"),
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
