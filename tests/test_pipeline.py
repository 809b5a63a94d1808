"""Pipeline properties: exact pixel round trip, sharding, torchrun, output errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import ct5n_dir, dicom_file, make_series, output_series_dirs, read_all, run_cli

from kernelconv.dicom.discovery import discover
from kernelconv.kernel_response import KernelTable
from kernelconv.pipeline import ConvertOptions, run_convert, shard


class IdentityEngine:
    """Returns its input clipped to the paper's HU window: isolates decode/encode."""

    description = "identity (test)"
    method_id = "identity-test"
    domains = ("B30f", "B50f", "B70f")
    domain_sharpness = {"B30f": 30.0, "B50f": 50.0, "B70f": 70.0}
    kernel_table = KernelTable.builtin()

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68) -> np.ndarray:
        return np.clip(hu, -1024.0, 3071.0)


@pytest.mark.parametrize("name", ["bad_sequence.dcm", "CT_small.dcm", "explicit_VR-UN.dcm",
                                  "693_UNCR.dcm"])
def test_pixels_round_trip_exactly_inside_the_hu_window(name: str, tmp_path: Path) -> None:
    make_series(dicom_file(name), tmp_path / "in", 2, kernel="B70f")
    report = run_convert(tmp_path / "in", tmp_path / "out", IdentityEngine,
                         IdentityEngine.domains, ConvertOptions(target="B30f"))
    assert report.results[0].status == "converted", report.results[0].reason
    sources = {d.SOPInstanceUID: d for d in read_all(tmp_path / "in")}
    for ds in read_all(output_series_dirs(tmp_path / "out")[0]):
        src = sources[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        hu_src = src.pixel_array * float(src.RescaleSlope) + float(src.RescaleIntercept)
        hu_out = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        pad = (src.pixel_array == src.PixelPaddingValue) if "PixelPaddingValue" in src else \
            np.zeros(hu_src.shape, bool)
        inside = (hu_src >= -1024) & (hu_src <= 3071) & ~pad
        np.testing.assert_array_equal(hu_out[inside], hu_src[inside])
        np.testing.assert_array_equal(hu_out[~inside & ~pad],
                                      np.clip(hu_src[~inside & ~pad], -1024, 3071))


def test_shards_are_disjoint_balanced_and_complete(tmp_path: Path) -> None:
    for i, n in enumerate([5, 1, 3, 2]):
        make_series(dicom_file("CT_small.dcm"), tmp_path / f"s{i}", n, seed=i)
    series = discover(tmp_path).series
    parts = [shard(series, r, 2) for r in range(2)]
    uids = [{s.series_uid for s in p} for p in parts]
    assert uids[0].isdisjoint(uids[1])
    assert uids[0] | uids[1] == {s.series_uid for s in series}
    assert sorted(sum(s.n_images for s in p) for p in parts) == [5, 6]


def test_output_that_is_a_file_is_refused(tmp_path: Path, tiny_model: Path, capsys) -> None:
    (tmp_path / "out").write_text("x")
    code, _, err = run_cli(["convert", ct5n_dir(), tmp_path / "out", "--to", "B30f",
                            "--from", "B70f", "--model", tiny_model], capsys)
    assert code == 5 and "not a folder" in err


def test_write_error_fails_the_series_cleanly(tmp_path: Path, tiny_model: Path,
                                             capsys) -> None:
    # a file where the study folder must go: creating the series folder fails (even as root)
    study = pydicom.dcmread(next(ct5n_dir().iterdir()), stop_before_pixels=True).StudyInstanceUID
    out = tmp_path / "out"
    out.mkdir()
    (out / study).write_text("in the way")
    code, stdout, err = run_cli(["convert", ct5n_dir(), out, "--to", "B30f", "--from", "B70f",
                                 "--model", tiny_model], capsys)
    assert code == 1
    assert "write error" in err and "Traceback" not in stdout + err
    assert sorted(p.name for p in out.iterdir()) == sorted([study, "kernelconv-report.json"])


@pytest.mark.slow
def test_torchrun_ranks_convert_disjoint_shares(tmp_path: Path, tiny_model: Path) -> None:
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in" / "a", 3, seed=1)
    make_series(dicom_file("CT_small.dcm"), tmp_path / "in" / "b", 3, seed=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531", "-m", "kernelconv",
         "convert", str(tmp_path / "in"), str(tmp_path / "out"), "--to", "B30f",
         "--model", str(tiny_model)],
        capture_output=True, text=True, env=env, timeout=300)
    # the ranks' own one-line errors come first, torch's launcher traceback last
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[:3000]
    reports = [json.loads((tmp_path / "out" / f"kernelconv-report.rank{r}.json").read_text())
               for r in range(2)]
    converted = [[s["series_uid"] for s in rep["series"] if s["status"] == "converted"]
                 for rep in reports]
    assert len(converted[0]) == 1 and len(converted[1]) == 1
    assert converted[0] != converted[1]
    assert len(output_series_dirs(tmp_path / "out")) == 2
    for ds in read_all(tmp_path / "out"):
        assert isinstance(ds, pydicom.Dataset) and ds.ConvolutionKernel == "B30f"


def test_output_probe_tolerates_another_rank_creating_and_removing_the_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun ranks probe OUT at the same moment: one rank's mkdir finding the folder made by
    the other, or the other removing its probe folder again, is not an output error (CI saw
    rank 0 exit 5 this way)."""
    from kernelconv import fileio

    out = tmp_path / "out" / "deeper"
    real_mkdir = Path.mkdir
    raced = {"created": 0, "removed": 0}

    def racing_mkdir(self: Path, *args, **kwargs) -> None:
        if self == out and not raced["created"]:
            raced["created"] += 1
            real_mkdir(self)  # the other rank got there first: ours raises FileExistsError
        real_mkdir(self, *args, **kwargs)

    real_write = Path.write_bytes

    def racing_write(self: Path, data: bytes) -> int:
        if self.parent == out and not raced["removed"]:
            raced["removed"] += 1
            out.rmdir()  # the other rank removes the folder it created before our probe lands
        return real_write(self, data)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    monkeypatch.setattr(Path, "write_bytes", racing_write)
    fileio.probe_output(out, "OUT", folder=True)
    assert raced == {"created": 1, "removed": 1}
    assert not any(p.name.startswith(".kernelconv-probe") for p in tmp_path.rglob("*"))


def test_output_probe_still_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    from kernelconv.errors import OutputError
    from kernelconv.fileio import probe_output

    (tmp_path / "a").write_text("not a folder")
    with pytest.raises(OutputError, match="is not a folder"):
        probe_output(tmp_path / "a" / "b", "OUT", folder=True)


class ConstantEngine(IdentityEngine):
    """Returns -1000 HU everywhere: a value the test source's encoding cannot hold."""

    method_id = "constant-test"

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68) -> np.ndarray:
        return np.full_like(hu, -1000.0)


def test_encoding_changes_when_the_source_cannot_hold_the_hu_range(tmp_path: Path) -> None:
    def unsigned_no_offset(ds, i):  # stored = HU, unsigned 12 bit: cannot hold negative HU
        arr = np.clip(ds.pixel_array.astype(np.int32) + 1024, 0, 4095).astype(np.uint16)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        for kw in ("PixelPaddingValue", "SmallestImagePixelValue", "LargestImagePixelValue"):
            ds.pop(kw, None)
        ds.PixelData = arr.tobytes()

    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2, edit=unsigned_no_offset)
    report = run_convert(tmp_path / "in", tmp_path / "out", ConstantEngine,
                         IdentityEngine.domains, ConvertOptions(target="B30f"))
    assert report.results[0].status == "converted", report.results[0].reason
    for ds in read_all(output_series_dirs(tmp_path / "out")[0]):
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.all(hu == -1000.0)
        assert (ds.BitsStored, ds.PixelRepresentation, float(ds.RescaleIntercept)) == \
            (16, 0, -1024.0)


def test_a_given_report_or_preview_is_split_per_rank() -> None:
    """Under torchrun every rank reports its own share: a --report or --preview the user named
    gets the rank in its name, or the ranks would overwrite each other's file."""
    from kernelconv.cli.convert import rank_path

    assert rank_path(Path("run/report.json"), 0, 1) == Path("run/report.json")
    assert rank_path(Path("run/report.json"), 1, 2) == Path("run/report.rank1.json")
    assert rank_path(Path("a.png"), 0, 4) == Path("a.rank0.png")
