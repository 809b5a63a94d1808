"""Enhanced (multi-frame) CT: converted frame by frame with the functional groups updated;
a non-HU Enhanced CT object (a perfusion map) is skipped with its reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from helpers import dciodvfy_errors, dicom_file, hu_enhanced_ct, output_series_dirs, run_cli


def test_enhanced_ct_converted_frame_by_frame(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = hu_enhanced_ct(tmp_path / "in" / "enhanced.dcm")
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--model", tiny_model], capsys)
    assert code == 0, err
    [out_dir] = output_series_dirs(tmp_path / "out")
    [f] = list(out_dir.iterdir())
    ds = pydicom.dcmread(f)
    source = pydicom.dcmread(src)
    assert ds.NumberOfFrames == 2 and ds.pixel_array.shape == (2, 512, 512)
    assert ds.SOPClassUID == source.SOPClassUID
    # Enhanced CT: value 2 is PRIMARY/MIXED (enumerated), not SECONDARY
    assert list(ds.ImageType) == ["DERIVED", "PRIMARY", "AXIAL", "NONE"]
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert list(shared.CTImageFrameTypeSequence[0].FrameType)[:2] == ["DERIVED", "PRIMARY"]
    evidence = ds.SourceImageEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source.SeriesInstanceUID
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert shared.CTReconstructionSequence[0].ConvolutionKernel == "B30f"
    for i, group in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
        item = group.DerivationImageSequence[0]
        assert item.DerivationCodeSequence[0].CodeValue == "113087"
        ref = item.SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert ref.ReferencedFrameNumber == i
        # per-frame position is kept
        assert group.PlanePositionSequence[0].ImagePositionPatient == \
            source.PerFrameFunctionalGroupsSequence[i - 1].PlanePositionSequence[0]\
            .ImagePositionPatient
    pvt = shared.PixelValueTransformationSequence[0]
    assert float(pvt.RescaleIntercept) == -1024.0 and pvt.RescaleType == "HU"
    assert "ConvolutionKernel" not in ds  # not a top-level attribute of Enhanced CT


@pytest.mark.tools
def test_enhanced_ct_adds_no_dciodvfy_errors(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = hu_enhanced_ct(tmp_path / "in" / "enhanced.dcm")
    assert run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f", "--model",
                    tiny_model], capsys)[0] == 0
    [f] = list(output_series_dirs(tmp_path / "out")[0].iterdir())
    new = dciodvfy_errors(f) - dciodvfy_errors(src)
    assert not new, sorted(new)


def test_perfusion_map_is_skipped_with_reason(tmp_path: Path, tiny_model: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(dicom_file("eCT_Supplemental.dcm"), tmp_path / "in" / "perf.dcm")
    shutil.copy(dicom_file("CT_small.dcm"), tmp_path / "in" / "ct.dcm")
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--from", "B70f", "--model", tiny_model], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    [skip] = report["skipped_files"]
    assert skip["path"].endswith("perf.dcm")
    assert "not Hounsfield units (RescaleType US)" in skip["reason"]
