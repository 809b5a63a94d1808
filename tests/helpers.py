"""Test helpers: real DICOM test files assembled into series, tiny model files, tools."""

from __future__ import annotations

import copy
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from kernelconv.cli import main
from kernelconv.modelfile import ModelInfo, save_model
from kernelconv.nets import Generator, GeneratorConfig

DOMAINS = ["B30f", "B50f", "B70f"]
#: the bundled example series (a simulated B70f chest, 512 x 512)
EXAMPLE_CHEST = Path(__file__).resolve().parents[1] / "examples" / "data" / "chest-b70f"
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def dicom_file(name: str) -> Path:
    """A file from pydicom's or pydicom-data's test files (pydicom-data must be installed)."""
    path = get_testdata_file(name)
    if path is None:
        pytest.fail(f"test file {name} not found: is pydicom-data installed?")
    return Path(str(path))


def ct5n_dir() -> Path:
    return dicom_file("CT_small.dcm").parent / "dicomdirtests" / "98892001" / "CT5N"


def make_tiny_model(path: Path, seed: int = 0, name: str = "tiny", output: str = "residual",
                    highpass_px: float = 4.0, head_scale: float | None = 0.001,
                    upsample: str = "pixelshuffle") -> Path:
    """A small model file with random weights (conv_dim 8, one residual block).

    By default the HU-preserving residual variant, whose zero-started last convolution gets
    small random weights (``head_scale``; None: left at zero, the identity): it changes every
    image but not local mean HU, so its conversions pass the HU check as a trained model's
    must. ``output="direct"`` (with ``highpass_px=0``) is the paper's generator, whose random
    output fails the check."""
    torch.manual_seed(seed)
    gen = Generator(GeneratorConfig(c_dim=3, conv_dim=8, n_down=2, n_res=1, output=output,
                                    highpass_px=highpass_px, upsample=upsample))
    if head_scale is not None and output != "direct":
        with torch.no_grad():
            gen.head[0].weight.normal_(0.0, head_scale)
    info = ModelInfo(name=name, domains=list(DOMAINS), arch_args=gen.config.to_dict(),
                     domain_sharpness={"B30f": 30, "B50f": 50, "B70f": 70},
                     provenance={"note": "random weights for tests"})
    save_model(path, info, gen.state_dict())
    return path


def example_chest_hu(n: int = 2) -> np.ndarray:
    """(n, 512, 512) float32 HU: the first ``n`` slices of the bundled example chest."""
    out = []
    for f in sorted(EXAMPLE_CHEST.glob("IM*"))[:n]:
        ds = pydicom.dcmread(f)
        out.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return np.stack(out).astype(np.float32)


def make_series(
    source: Path,
    folder: Path,
    n: int,
    kernel: str | None = "B70f",
    spacing: float = 1.25,
    seed: int = 0,
    series_uid: str | None = None,
    edit: Callable[[Dataset, int], None] | None = None,
) -> list[Path]:
    """Copy one real file into an n-slice series: new UIDs, positions along the normal.

    File names and InstanceNumbers are deliberately shuffled against the positions, so a
    correct sort must use the geometry.
    """
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(source)
    rng = random.Random(seed)
    series_uid = series_uid or generate_uid(entropy_srcs=[str(source), str(seed), "series"])
    order = list(range(n))
    rng.shuffle(order)
    iop = [float(v) for v in base.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]
    normal = np.cross(iop[:3], iop[3:])
    ipp0 = np.array([float(v) for v in base.get("ImagePositionPatient", [0, 0, 0])])
    paths = []
    for i in range(n):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageOrientationPatient = iop
        ds.ImagePositionPatient = [round(float(v), 4) for v in ipp0 + normal * spacing * i]
        ds.InstanceNumber = order[i] + 1
        if kernel is not None:
            ds.ConvolutionKernel = kernel
        if edit is not None:
            edit(ds, i)
        name = f"img{rng.randrange(10**6):06d}" + ("" if i % 2 else ".dcm")
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def simulate_into(root: Path, slices: int, seed: int) -> Path:
    """Run `kernelconv simulate` (chest, one patient) into ``root``; fails the test if it fails."""
    try:
        main(["simulate", str(root), "--slices", str(slices), "--seed", str(seed)])
    except SystemExit as exc:
        assert exc.code == 0, f"simulate exited with {exc.code}"
    return root


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the kernelconv CLI in-process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def require_tool(name: str) -> str:
    """The path of an external tool; on CI a missing tool FAILS the test (never skips)."""
    path = shutil.which(name)
    if path is None:
        if ON_CI:
            pytest.fail(f"{name} is not installed; scripts/setup.sh installs it (apt)")
        pytest.skip(f"{name} not installed (run scripts/setup.sh test)")
    return path


def system_tool(path: str) -> str:
    """An external tool by absolute path (a virtualenv's scripts of the same name cannot
    shadow it); on CI a missing tool FAILS the test (never skips)."""
    if not os.access(path, os.X_OK):
        if ON_CI:
            pytest.fail(f"{path} is not installed; scripts/setup.sh installs it (apt)")
        pytest.skip(f"{path} not installed (run scripts/setup.sh test)")
    return path


def dcmconv(*args: str | Path) -> None:
    """Run dcmtk's /usr/bin/dcmconv; a failure fails the test with dcmconv's message."""
    tool = system_tool("/usr/bin/dcmconv")
    proc = subprocess.run([tool, *map(str, args)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"dcmconv {' '.join(map(str, args))}: {proc.stderr.strip()}"


def dciodvfy_errors(path: Path) -> set[str]:
    """dciodvfy's error lines for a file, with quoted values blanked for comparison."""
    import re

    tool = require_tool("dciodvfy")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    errs = set()
    for line in lines:
        if line.startswith("Error"):
            line = re.sub(r'"[^"]*"', '""', line)
            line = re.sub(r"<[0-9a-f.]{20,}>", "<uid>", line)
            errs.add(line.strip())
    return errs


def read_all(folder: Path) -> list[Dataset]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".json")
                   and not p.name.endswith(".png"))
    return [pydicom.dcmread(p) for p in files]


def output_series_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*/*") if p.is_dir())


assert sys.version_info >= (3, 10)


def hu_enhanced_ct(path: Path, frames: int | None = None, top_level_rescale: bool = False
                   ) -> Path:
    """eCT_Supplemental.dcm made into a plain HU Enhanced CT with kernel B70f. With ``frames``
    it holds that many frames (the source's two, shifted and with noise added, each at its
    own position); with ``top_level_rescale`` its rescale lies only at the top level,
    unsigned with intercept -1000 (an encoding that cannot hold -1024 HU)."""
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(dicom_file("eCT_Supplemental.dcm"))
    shared = ds.SharedFunctionalGroupsSequence[0]
    shared.PixelValueTransformationSequence[0].RescaleType = "HU"
    shared.CTImageFrameTypeSequence[0].FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    recon = Dataset()
    recon.ConvolutionKernel = "B70f"
    shared.CTReconstructionSequence = Sequence([recon])
    if frames is not None:
        src = ds.pixel_array
        rng = np.random.default_rng(1)
        stack = np.stack([np.roll(src[i % 2], 7 * i, axis=1) for i in range(frames)])
        stack = np.clip(stack.astype(np.int32) + rng.integers(-20, 20, stack.shape), 0, 4000)
        groups = []
        for i in range(frames):
            g = copy.deepcopy(ds.PerFrameFunctionalGroupsSequence[i % 2])
            g.PlanePositionSequence[0].ImagePositionPatient = [0.0, 0.0, float(i)]
            groups.append(g)
        ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
        ds.NumberOfFrames = frames
        ds.PixelData = stack.astype(np.uint16).tobytes()
    if top_level_rescale:
        del shared.PixelValueTransformationSequence
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1000, 1, "HU"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
