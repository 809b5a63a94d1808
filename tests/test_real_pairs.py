"""The truth passes every check: on every real scanner pair the project has, the real target
image of the same raw data, treated as if a converter had produced it, is accepted by the
pipeline's HU check in both directions, with the expected noise ratio taken from the kernel
table in use, and draws no warning. Where a true kernel change fails, the check is wrong, not
the scanner.

Pairs: the Canon phantoms (FC51/FC13, examples/data/canon-phantom, MIT), six slices of the
Siemens patient chest (B40f/B70f, tests/data/siemens-chest-pair, CC BY 4.0) and, where this
checkout sits beside the project's shared data (../shared/data), all 30 slices of that chest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from kernelconv.dicom.dataset import decode_hu
from kernelconv.engines import model_kernel_table
from kernelconv.kernel_response import KernelTable, domain_sharpness
from kernelconv.modelfile import read_info, resolve_model
from kernelconv.pipeline import ConvertOptions, run_convert

ROOT = Path(__file__).resolve().parent.parent
CANON = ROOT / "examples" / "data" / "canon-phantom"
SIEMENS = Path(__file__).resolve().parent / "data" / "siemens-chest-pair"
SHARED_SIEMENS = ROOT.parent / "shared" / "data" / "real-ct-siemens-chest-pair" / "Lung_Dx-A0002"

PAIRS = [(CANON / "phantom1", "FC51", "FC13"), (CANON / "phantom2", "FC51", "FC13"),
         (SIEMENS, "B70f", "B40f")]
if SHARED_SIEMENS.is_dir():  # the whole series, where the shared data is mounted
    PAIRS.append((SHARED_SIEMENS, "B70f", "B40f"))


def _by_z(folder: Path) -> dict[float, np.ndarray]:
    out = {}
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        out[round(float(ds.ImagePositionPatient[2]), 2)] = decode_hu(ds, path)[1][0]
    return out


class TruthEngine:
    """'Converts' each slice into the real target reconstruction of the same raw data (the
    slice of the other series at the same position, found by the input's pixels)."""

    description = "the true target reconstruction (test)"
    method_id = "truth-test"

    def __init__(self, source: Path, target: Path, table: KernelTable) -> None:
        src, dst = _by_z(source), _by_z(target)
        self.lookup = {src[z].tobytes(): dst[z] for z in src}
        self.kernel_table = table
        self.domains = tuple(table.responses)
        self.domain_sharpness = domain_sharpness(self.domains, table=table.responses)

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68) -> np.ndarray:
        return np.stack([self.lookup[h.tobytes()] for h in hu]).astype(np.float32)


def _tables() -> dict[str, KernelTable]:
    """The kernel tables a conversion may run on: the built-in one (the filter's) and the
    default model's (its base filter's responses)."""
    return {"built-in": KernelTable.builtin(),
            "default model": model_kernel_table(read_info(resolve_model(None)))}


@pytest.mark.parametrize("table_name", ["built-in", "default model"])
@pytest.mark.parametrize("reverse", [False, True], ids=["sharp-to-soft", "soft-to-sharp"])
@pytest.mark.parametrize(("root", "sharp", "soft"), PAIRS,
                         ids=[f"{p[0].parent.name}-{p[0].name}" for p in PAIRS])
def test_the_true_target_passes_the_hu_check(root: Path, sharp: str, soft: str, reverse: bool,
                                             table_name: str, tmp_path: Path) -> None:
    source, target = (soft, sharp) if reverse else (sharp, soft)
    table = _tables()[table_name]
    engine = TruthEngine(root / source, root / target, table)
    report = run_convert(root / source, tmp_path / "out", lambda: engine, engine.domains,
                         ConvertOptions(target=target), owner="the truth")
    [result] = report.results
    assert result.status == "converted", result.reason
    check = result.hu_check
    assert check is not None and check["passed"]
    expected = table.expected_noise_ratio(source, target, highpass_sigma_mm=2.5)
    assert expected is not None and check["expected_noise_ratio"] == pytest.approx(expected,
                                                                                   abs=1e-3)
    for region in ("soft tissue", "fat", "lung"):
        bias = check["bias_hu"][region]
        assert bias is None or abs(bias) <= 3.0, (region, bias)
    assert not any("noise x" in w for w in result.warnings), result.warnings
