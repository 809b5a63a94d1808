"""A kernel's response estimated from the images (kernelconv.fingerprint): it recovers the
simulator's kernels, flags a mislabelled series, converts an unknown kernel on the estimate
(marked in the report and the DICOM), and says when it cannot know (iterative
reconstruction, no flat tissue)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import dicom_file, output_series_dirs, run_cli

from kernelconv.dicom.dataset import decode_hu, pixel_spacing_mm
from kernelconv.evaluation.metrics import psnr
from kernelconv.fingerprint import check_claim, edge_mtf, estimate, reconstruction_notes
from kernelconv.kernel_response import builtin_table, load_response_table, mtf_figures

PAIR = Path(__file__).resolve().parent / "data" / "siemens-chest-pair"


def _stack(folder: Path) -> tuple[np.ndarray, float, dict[float, np.ndarray]]:
    by_z = {}
    px = 0.0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"):
        ds = pydicom.dcmread(path)
        by_z[round(float(ds.ImagePositionPatient[2]), 2)] = decode_hu(ds, path)[1][0]
        px = pixel_spacing_mm(ds) or 0.0
    return np.stack([by_z[z] for z in sorted(by_z)]), px, by_z


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Simulated chests at half dose and 0.68 mm, and at twice the dose and 0.49 mm."""
    from kernelconv.sim.series import SimulationConfig, simulate

    out = {}
    for name, dose, fov in (("low-dose", 0.5, 350.0), ("fine", 2.0, 250.0)):
        root = tmp_path_factory.mktemp(name)
        simulate(root, SimulationConfig(slices=3, seed=61, dose=dose, fov=fov),
                 load_response_table())
        out[name] = root / "patient-000"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", ["low-dose", "fine"])
@pytest.mark.parametrize("kernel", ["B30f", "B50f", "B70f"])
def test_fingerprints_recover_the_simulators_kernels(sims: dict[str, Path], case: str,
                                                     kernel: str) -> None:
    images, px, _ = _stack(sims[case] / kernel)
    fp = estimate(images, px)
    assert fp.valid, fp.reason
    true50 = mtf_figures(builtin_table()[kernel])[0]
    assert fp.mtf50 == pytest.approx(true50, rel=0.10), (fp.mtf50, true50)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["B30f", "B70f"])
def test_the_body_outline_gives_the_simulators_mtf(sims: dict[str, Path], kernel: str) -> None:
    """The air-tissue edge of the body (1 mm simulated slices: a true step) measures the image
    MTF: the kernel's window times the simulated scanner's, as mtf_figures computes it."""
    images, px, _ = _stack(sims["low-dose"] / kernel)
    edge = edge_mtf(images, px)
    assert edge is not None and edge.edge_points > 100
    assert edge.mtf50 == pytest.approx(mtf_figures(builtin_table()[kernel])[0], rel=0.10)


@pytest.mark.slow
def test_a_mislabelled_series_is_refused_or_warned(sims: dict[str, Path], tmp_path: Path,
                                                   capsys) -> None:
    """A B70f series whose header says B30f: its conversion would rest on the wrong kernel."""
    src = tmp_path / "in"
    shutil.copytree(sims["low-dose"] / "B70f", src)
    for f in src.iterdir():
        ds = pydicom.dcmread(f)
        ds.ConvolutionKernel = "B30f"
        ds.save_as(f)
    code, _, err = run_cli(["convert", src, tmp_path / "out", "--to", "B50f", "--method",
                            "filter"], capsys)
    assert code == 1
    assert "the images do not look like B30f" in err and "a sharper kernel" in err
    [series] = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())["series"]
    assert series["status"] == "failed" and series["fingerprint"]["mtf50_lpcm"] > 6.0
    assert output_series_dirs(tmp_path / "out") == []
    code, _, err = run_cli(["convert", src, tmp_path / "warned", "--to", "B50f", "--method",
                            "filter", "--kernel-check", "warn"], capsys)
    assert code == 0, err
    [series] = json.loads((tmp_path / "warned" / "kernelconv-report.json").read_text())["series"]
    assert any("do not look like B30f" in w for w in series["warnings"])
    # the truthfully labelled series agrees with its kernel
    code, _, err = run_cli(["convert", sims["low-dose"] / "B70f", tmp_path / "ok", "--to",
                            "B50f", "--method", "filter"], capsys)
    assert code == 0, err
    [series] = json.loads((tmp_path / "ok" / "kernelconv-report.json").read_text())["series"]
    assert series["fingerprint"]["claim"] == "agrees"


def test_real_fingerprints_follow_the_real_pairs_transfer() -> None:
    """The real Siemens B40f/B70f pair (6 slices): the ratio of the two series' fingerprints,
    each estimated from its own images alone, follows the pair's measured transfer (the
    least-squares fit of one on the other, the calibration's) within 15 % from 2 to 6 lp/cm,
    and neither contradicts its header."""
    from kernelconv.calibration.fit import Accumulator, accumulate, solve

    soft, px, soft_z = _stack(PAIR / "B40f")
    sharp, _, sharp_z = _stack(PAIR / "B70f")
    fp_soft, fp_sharp = estimate(soft, px), estimate(sharp, px)
    assert fp_soft.valid and fp_sharp.valid
    up, down = Accumulator(), Accumulator()
    for z in soft_z:
        accumulate(up, down, soft_z[z], sharp_z[z], px)
    fit = solve(up, "B40f", "B70f")
    assert fp_soft.response is not None and fp_sharp.response is not None
    for f in (2.0, 3.0, 4.0, 5.0, 6.0):
        ratio = fp_sharp.response.window(np.array([f]))[0] / \
            fp_soft.response.window(np.array([f]))[0]
        assert ratio == pytest.approx(float(fit(f)), rel=0.15), (f, ratio, float(fit(f)))
    table = builtin_table()
    assert check_claim(fp_soft, "B40f", table["B40f"]) is None
    assert check_claim(fp_sharp, "B70f", table["B70f"]) is None


def test_an_unknown_kernel_is_converted_on_its_estimate(tmp_path: Path, capsys) -> None:
    """The real B70f series under a name no table knows: converted to B40f on the response
    of its images, marked so, and much closer to the real B40f than the unchanged image."""
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted((PAIR / "B70f").iterdir()):
        if f.suffix == ".dcm":
            ds = pydicom.dcmread(f)
            ds.ConvolutionKernel = "ZZ70"
            ds.save_as(src / f.name)
    code, _, err = run_cli(["convert", src, tmp_path / "out", "--to", "B40f", "--method",
                            "filter"], capsys)
    assert code == 0, err
    [series] = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())["series"]
    assert series["source_domain"] == "ZZ70 (estimated)"
    assert series["fingerprint"]["estimated_source"] is True
    for key in ("mtf50_lpcm", "mtf10_lpcm", "noise_sd_hu", "nps_peak_lpcm"):
        assert series["fingerprint"][key] is not None, key
    assert any("estimated from the images" in w for w in series["warnings"])
    _, _, pred = _stack(output_series_dirs(tmp_path / "out")[0])
    ds = pydicom.dcmread(next(output_series_dirs(tmp_path / "out")[0].iterdir()))
    assert "response was estimated from the images" in ds.DerivationDescription
    _, _, ref = _stack(PAIR / "B40f")
    _, _, unchanged = _stack(PAIR / "B70f")

    def mean_psnr(images: dict[float, np.ndarray]) -> float:
        return float(np.mean([psnr(np.clip(images[z], -1024, 3071),
                                   np.clip(ref[z], -1024, 3071)) for z in ref]))

    assert mean_psnr(pred) > mean_psnr(unchanged) + 5.0


def test_iterative_reconstructions_are_recognised_from_the_headers() -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    assert reconstruction_notes(ds, "B30f") == ()
    ds.SeriesDescription = "Thorax 1.0 Br40 ADMIRE 3"
    assert any("ADMIRE" in n for n in reconstruction_notes(ds, "Br40d"))
    ds.SeriesDescription = "Chest"
    ds.ConvolutionKernel = ["Br40d", "3"]
    assert any("strength" in n for n in reconstruction_notes(ds, "Br40d"))
    assert any("SAFIRE" in n for n in reconstruction_notes(ds, "I30f"))
    ds.ReconstructionAlgorithm = "ITERATIVE"
    assert any("ITERATIVE" in n for n in reconstruction_notes(ds, "B30f"))


def test_an_image_without_flat_tissue_has_no_estimate() -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))  # 128 x 128: no quiet 64-pixel tile
    fp = estimate(decode_hu(ds, dicom_file("CT_small.dcm"))[1], 0.66)
    assert not fp.valid and fp.response is None and "too few flat" in fp.reason


def test_an_unknown_kernel_that_cannot_be_estimated_fails_with_the_reason(
        tmp_path: Path, capsys) -> None:
    from helpers import make_series

    make_series(dicom_file("CT_small.dcm"), tmp_path / "in", 2, kernel="ZZ99")
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--method", "filter"], capsys)
    assert code == 1
    assert "kernel ZZ99 is not in the kernel table and its response cannot be estimated" in err
