"""A site calibration that is right on real pairs (issue 26, part 3).

On every real scanner pair the project ships, `kernelconv calibrate` fitted on one part and
`kernelconv convert --method filter --kernel-table` applied to the other (held out of the fit),
in both directions:

- the converted series is accepted by convert's HU check;
- its low-pass shift (the check's per-region bias: soft tissue, fat, lung) is within
  ``MAX_BIAS_GAP_HU`` of the true target's own shift (the real target reconstruction of the
  same raw data treated as the converter's output, through convert's own pipeline and the same
  kernel table, like tests/test_real_pairs.py);
- its PSNR against the true target is within ``MAX_PSNR_GAP_DB`` of the oracle: the better of
  two linear filters fitted on the TEST pair itself, a 2-D least-squares FIR
  (benchmarks/calibration_study.py) and the same `calibrate` run on the test slices.

Pairs: the Canon phantoms (FC51/FC13, examples/data/canon-phantom, MIT; phantom1 <-> phantom2)
and six slices of the Siemens patient chest (B40f/B70f, tests/data/siemens-chest-pair,
CC BY 4.0; z 104-184 mm <-> z 224-304 mm).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from helpers import output_series_dirs
from test_real_pairs import TruthEngine, _by_z

from kernelconv.cli import main
from kernelconv.evaluation.metrics import psnr
from kernelconv.kernel_response import KernelTable
from kernelconv.pipeline import ConvertOptions, run_convert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from calibration_study import fir_apply, fir_fit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CANON = ROOT / "examples" / "data" / "canon-phantom"
SIEMENS = Path(__file__).resolve().parent / "data" / "siemens-chest-pair"
MAX_BIAS_GAP_HU = 1.0
MAX_PSNR_GAP_DB = 0.5
REGIONS = ("soft tissue", "fat", "lung")

#: (name, sharp kernel, soft kernel, how the slices split: "phantom" or "halves")
SPLITS = [("canon p1->p2", "FC51", "FC13"), ("canon p2->p1", "FC51", "FC13"),
          ("siemens first->second", "B70f", "B40f"), ("siemens second->first", "B70f", "B40f")]


def _cli(args: list[object]) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _halves(root: Path, kernel: str, work: Path) -> tuple[Path, Path]:
    """The series split by position into two folders (first half, second half) of links."""
    files = sorted(((float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]),
                     p) for p in (root / kernel).iterdir()), key=lambda t: t[0])
    parts = (files[: len(files) // 2], files[len(files) // 2:])
    out = []
    for name, part in zip(("first", "second"), parts, strict=True):
        folder = work / name / kernel
        folder.mkdir(parents=True)
        for _, p in part:
            (folder / p.name).symlink_to(p.resolve())
        out.append(folder)
    return out[0], out[1]


class Case:
    """One split: calibration folders and test folders per kernel, both calibrations."""

    def __init__(self, name: str, sharp: str, soft: str, work: Path) -> None:
        self.name, self.sharp, self.soft = name, sharp, soft
        if name.startswith("canon"):
            cal, test = ("phantom1", "phantom2") if "p1->p2" in name else ("phantom2", "phantom1")
            self.cal = {k: CANON / cal / k for k in (sharp, soft)}
            self.test = {k: CANON / test / k for k in (sharp, soft)}
        else:
            parts = {k: _halves(SIEMENS, k, work) for k in (sharp, soft)}
            first = "first->second" in name
            self.cal = {k: p[0 if first else 1] for k, p in parts.items()}
            self.test = {k: p[1 if first else 0] for k, p in parts.items()}
        self.table = self._calibrate(self.cal, work / "site.json")
        self.test_table = self._calibrate(self.test, work / "test-site.json")

    def _calibrate(self, folders: dict[str, Path], out: Path) -> Path:
        code = _cli(["calibrate", "--pair", folders[self.sharp], folders[self.soft],
                     "--out-table", out])
        assert code == 0, f"calibrate failed on {folders}"
        return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return {name: Case(name, sharp, soft, tmp_path_factory.mktemp(name.replace(" ", "-")))
            for name, sharp, soft in SPLITS}


def _convert(source: Path, target: str, table: Path, out: Path
             ) -> tuple[dict[float, np.ndarray], dict[str, Any]]:
    """`kernelconv convert --method filter --kernel-table`: the written series ({z: HU}) and its
    HU check from the run report; the HU check must have accepted it (exit 0)."""
    code = _cli(["convert", source, out, "--to", target, "--method", "filter",
                 "--kernel-table", table])
    report = json.loads((out / "kernelconv-report.json").read_text())
    [series] = report["series"]
    assert code == 0 and series["status"] == "converted", series.get("reason")
    [folder] = output_series_dirs(out)
    return _by_z(folder), series["hu_check"]


def _truth_check(source: Path, target_dir: Path, source_kernel: str, target: str,
                 table: Path, out: Path) -> dict[str, Any]:
    """The HU check of the true target reconstruction, as if a converter had produced it."""
    engine = TruthEngine(source, target_dir, KernelTable.load(table))
    report = run_convert(source, out, lambda: engine, engine.domains,
                         ConvertOptions(target=target), owner="the truth")
    [result] = report.results
    assert result.hu_check is not None
    return result.hu_check


def _psnr(pred: dict[float, np.ndarray], ref: dict[float, np.ndarray]) -> float:
    assert set(pred) == set(ref)
    return float(np.mean([psnr(np.clip(pred[z], -1024, 3071), np.clip(ref[z], -1024, 3071))
                          for z in sorted(ref)]))


@dataclass
class Converted:
    """One held-out conversion: the calibrated output and its HU check, the truth's check."""

    case: Case
    source: str
    target: str
    pred: dict[float, np.ndarray]
    check: dict[str, Any]
    truth: dict[str, Any]


@pytest.fixture(scope="module")
def converted(cases: dict[str, Case], tmp_path_factory: pytest.TempPathFactory
              ) -> dict[tuple[str, bool], Converted]:
    out = {}
    for split, case in cases.items():
        for reverse in (False, True):
            src, dst = (case.soft, case.sharp) if reverse else (case.sharp, case.soft)
            work = tmp_path_factory.mktemp("conv")
            pred, check = _convert(case.test[src], dst, case.table, work / "cal")
            truth = _truth_check(case.test[src], case.test[dst], src, dst, case.table,
                                 work / "truth")
            out[(split, reverse)] = Converted(case, src, dst, pred, check, truth)
    return out


DIRECTIONS = pytest.mark.parametrize("reverse", [False, True],
                                     ids=["sharp-to-soft", "soft-to-sharp"])


@DIRECTIONS
@pytest.mark.parametrize("split", [s[0] for s in SPLITS])
def test_calibrated_filter_moves_local_mean_hu_as_the_true_target_does(
        converted: dict[tuple[str, bool], Converted], split: str, reverse: bool) -> None:
    c = converted[(split, reverse)]
    assert c.check["passed"], c.check
    gaps = {}
    for region in REGIONS:
        ours, true = c.check["bias_hu"][region], c.truth["bias_hu"][region]
        assert (ours is None) == (true is None), (region, ours, true)
        if ours is not None:
            gaps[region] = ours - true
    assert gaps and all(abs(g) <= MAX_BIAS_GAP_HU for g in gaps.values()), (c.check, c.truth)


#: not reached: soft -> sharp calibrated on the Siemens subset's first three slices (z 104-184
#: mm, one without lung) and tested on the last three is 0.50-0.51 dB below the FIR fitted on
#: the test slices; calibrated on all 15 slices of the first half it is still 0.42 dB below on
#: the same three (docs/calibration.md): the halves' content differs, more slices barely help
SHORT = {("siemens first->second", True)}


@DIRECTIONS
@pytest.mark.parametrize("split", [s[0] for s in SPLITS])
def test_calibrated_filter_is_within_half_a_db_of_a_linear_fit_to_the_test_pair(
        converted: dict[tuple[str, bool], Converted], split: str, reverse: bool,
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if (split, reverse) in SHORT:
        request.applymarker(pytest.mark.xfail(strict=True, reason="docs/calibration.md: the "
                                              "soft -> sharp gap on the 6-slice subset"))
    c = converted[(split, reverse)]
    ref = _by_z(c.case.test[c.target])
    same_fit, _ = _convert(c.case.test[c.source], c.target, c.case.test_table,
                           tmp_path / "oracle")
    x = _by_z(c.case.test[c.source])
    zs = sorted(ref)
    xs, ys = np.stack([x[z] for z in zs]), np.stack([ref[z] for z in zs])
    fir = fir_apply(xs, fir_fit(xs, ys, samples=60_000))
    oracle = max(_psnr(same_fit, ref), _psnr(dict(zip(zs, fir, strict=True)), ref))
    ours = _psnr(c.pred, ref)
    assert ours > _psnr(x, ref) + 5.0  # far from the unchanged image
    assert ours >= oracle - MAX_PSNR_GAP_DB, (ours, oracle)
