"""Series discovery: grouping, geometric sorting, gaps and duplicates, skipped files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from helpers import ct5n_dir, dicom_file, make_series

from kernelconv.dicom.discovery import discover


def test_ct5n_sorted_along_normal_not_by_name(tmp_path: Path) -> None:
    found = discover(ct5n_dir())
    assert len(found.series) == 1
    s = found.series[0]
    pos = [sl.position for sl in s.slices]
    assert pos == sorted(pos)
    assert s.kernel == "STANDARD"
    # the real files are named 2062..3353 with z decreasing: the sort is by geometry
    assert [sl.path.name for sl in s.slices] == ["3353", "3023", "2693", "2392", "2062"]


def test_oblique_series_sorted_by_projection_on_normal(tmp_path: Path) -> None:
    c, s_ = np.cos(0.3), np.sin(0.3)

    def tilt(ds, i):
        ds.ImageOrientationPatient = [1, 0, 0, 0, c, s_]

    make_series(dicom_file("CT_small.dcm"), tmp_path, 7, edit=tilt, spacing=2.0, seed=5)
    series = discover(tmp_path).series[0]
    normal = np.cross([1, 0, 0], [0, c, s_])
    proj = [float(np.dot([float(v) for v in __import__("pydicom").dcmread(
        sl.path).ImagePositionPatient], normal)) for sl in series.slices]
    assert proj == sorted(proj)
    assert [sl.instance_number for sl in series.slices] != sorted(
        sl.instance_number for sl in series.slices)  # InstanceNumbers were shuffled
    assert series.warnings == []


def test_interleaved_series_in_one_folder_are_separated(tmp_path: Path) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path, 4, seed=1, kernel="B70f")
    make_series(dicom_file("CT_small.dcm"), tmp_path, 3, seed=2, kernel="B30f")
    found = discover(tmp_path)
    assert sorted(len(s.slices) for s in found.series) == [3, 4]
    assert {s.kernel for s in found.series} == {"B30f", "B70f"}


def test_gaps_and_duplicate_positions_are_reported(tmp_path: Path) -> None:
    def geometry(ds, i):
        z = [0.0, 1.0, 2.0, 2.0, 6.0][i]
        ds.ImagePositionPatient = [0.0, 0.0, z]

    make_series(dicom_file("CT_small.dcm"), tmp_path, 5, edit=geometry)
    s = discover(tmp_path).series[0]
    text = " ".join(s.warnings)
    assert "1 duplicate slice position" in text
    assert "gap of 4.00 mm" in text and "spacing 1.00 mm" in text


def test_multivalued_kernel_uses_first_value(tmp_path: Path) -> None:
    def two(ds, i):
        ds.ConvolutionKernel = ["B70f", "SHARP"]

    make_series(dicom_file("CT_small.dcm"), tmp_path, 2, edit=two)
    assert discover(tmp_path).series[0].kernel == "B70f"


def test_missing_geometry_fails_series(tmp_path: Path) -> None:
    def strip(ds, i):
        del ds.ImagePositionPatient

    make_series(dicom_file("CT_small.dcm"), tmp_path, 2, edit=strip)
    s = discover(tmp_path).series[0]
    assert s.error is not None and "ImagePositionPatient" in s.error


def test_localizer_and_non_ct_skipped(tmp_path: Path) -> None:
    def scout(ds, i):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]

    make_series(dicom_file("CT_small.dcm"), tmp_path / "scout", 1, edit=scout)
    shutil.copy(dicom_file("MR_small.dcm"), tmp_path / "mr")
    found = discover(tmp_path)
    assert found.series == []
    reasons = " | ".join(s.reason for s in found.skipped)
    assert "localizer" in reasons and "not CT (MR Image Storage" in reasons


def test_duplicate_sop_instance_is_reported_once(tmp_path: Path) -> None:
    paths = make_series(dicom_file("CT_small.dcm"), tmp_path, 2)
    shutil.copy(paths[0], tmp_path / "copy-of-first")
    found = discover(tmp_path)
    assert len(found.series[0].slices) == 2
    assert any("same SOPInstanceUID" in s.reason for s in found.skipped)
