"""Every derived file passes dciodvfy (dicom3tools) with no error its source did not have,
and reads back in dcmtk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from helpers import (
    ct5n_dir,
    dciodvfy_errors,
    dicom_file,
    make_series,
    output_series_dirs,
    require_tool,
    run_cli,
)

pytestmark = pytest.mark.tools

SOURCES = ["CT_small.dcm", "693_UNCR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm",
           "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"]


def _convert_and_compare(src_dir: Path, out: Path, model: Path, capsys, *extra: str) -> int:
    code, _, err = run_cli(["convert", src_dir, out, "--to", "B30f", "--model", model,
                            *extra], capsys)
    assert code == 0, err
    by_uid = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
              for p in src_dir.rglob("*") if p.is_file()}
    checked = 0
    for series in output_series_dirs(out):
        for f in series.iterdir():
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            src = by_uid[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
            new = dciodvfy_errors(f) - dciodvfy_errors(src)
            assert not new, f"{f.name} (from {src.name}): {sorted(new)}"
            checked += 1
    return checked


@pytest.mark.parametrize("name", SOURCES)
def test_dciodvfy_adds_no_errors(name: str, tmp_path: Path, tiny_model: Path, capsys) -> None:
    make_series(dicom_file(name), tmp_path / "in", 2, kernel="B70f")
    assert _convert_and_compare(tmp_path / "in", tmp_path / "out", tiny_model, capsys) == 2


def test_dciodvfy_on_real_ct5n_series(tmp_path: Path, tiny_model: Path, capsys) -> None:
    n = _convert_and_compare(ct5n_dir(), tmp_path / "out", tiny_model, capsys, "--from", "B70f")
    assert n == 5


def test_dcmtk_reads_derived_files(tmp_path: Path, tiny_model: Path, capsys) -> None:
    dcmdump = require_tool("dcmdump")
    make_series(dicom_file("bad_sequence.dcm"), tmp_path / "in", 1, kernel="B70f")
    assert run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f", "--model",
                    tiny_model], capsys)[0] == 0
    f = next(output_series_dirs(tmp_path / "out")[0].iterdir())
    proc = subprocess.run([dcmdump, "+P", "0018,1210", "+P", "0008,0008", "+P", "0002,0010",
                           str(f)], capture_output=True, text=True, check=True)
    assert "[B30f]" in proc.stdout
    assert "DERIVED\\SECONDARY\\AXIAL" in proc.stdout
    assert "LittleEndianExplicit" in proc.stdout
