"""Why does a model move local mean HU on real anatomy? Probes with the per-series HU check.

For a model (default: the default model) and the classical filter, converts real CT slices
(pydicom-data's GE head, Siemens neck and abdomen; the Canon phantom of shared/data) and a
simulated chest slice, and prints the low-pass bias (kernelconv.hu_check) per region. Then
tests the candidate causes on the simulated slice, where the model is right, one at a time:

  offset    the same slice + 50 HU everywhere: a conversion must move its output by 50 HU too
  crop      the central 256 x 256 (other instance-norm statistics, no change in content)
  pad       the slice inside a 768 x 768 canvas of air (more air, other statistics)
  spacing   resampled to 0.48 mm pixels (the GE head's spacing), same anatomy
  head      a real head at its own spacing, and resampled to the simulator's 0.684 mm

    python benchmarks/hu_bias_probe.py [--model NAME|PATH] [--phantom-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from scipy import ndimage

from kernelconv.dicom.dataset import decode_hu, pixel_spacing_mm
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.engines.select import EngineSpec, select_engine
from kernelconv.hu_check import HuCheck
from kernelconv.kernel_response import REFERENCE_PIXEL_MM, load_response_table
from kernelconv.sim.series import SimulationConfig, simulate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ct-canon-phantom"


def load(path: Path) -> tuple[np.ndarray, float]:
    ds = pydicom.dcmread(path)
    return decode_hu(ds, path)[1][0], pixel_spacing_mm(ds) or REFERENCE_PIXEL_MM


def bias(engine: object, hu: np.ndarray, pixel: float, src: str, dst: str) -> HuCheck:
    out = engine.convert(hu[None].astype(np.float32), src, dst, pixel_mm=pixel)[0]  # type: ignore[attr-defined]
    check = HuCheck()
    check.add(hu, out, pixel)
    return check


def fmt(check: HuCheck) -> str:
    b = check.bias_hu
    cells = [f"{b[k]:+7.1f}" if b[k] is not None else "      -" for k in
             ("soft tissue", "fat", "lung", "air")]
    ratio = f"{check.noise_ratio:5.2f}" if check.noise_ratio is not None else "    -"
    return " ".join(cells) + f"  {ratio}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--phantom-dir", type=Path, default=SHARED)
    args = ap.parse_args()
    selected = select_engine(EngineSpec(model=args.model))
    model = selected.factory()
    filt = FilterEngine()
    cases: list[tuple[str, np.ndarray, float, str, str]] = []
    for name, label in (("693_UNCR.dcm", "GE head"), ("bad_sequence.dcm", "Siemens neck"),
                        ("explicit_VR-UN.dcm", "abdomen")):
        hu, px = load(Path(str(get_testdata_file(name))))
        cases.append((f"{label} ({px:.3f} mm) as B70f", hu, px, "B70f", "B30f"))
        cases.append((f"{label} ({px:.3f} mm) as B30f", hu, px, "B30f", "B70f"))
    for phantom in sorted(args.phantom_dir.glob("phantom*")):
        for f in sorted((phantom / "FC51").glob("*.dcm"))[:1]:
            hu, px = load(f)
            cases.append((f"Canon {phantom.name} FC51 as B70f", hu, px, "B70f", "B30f"))
        for f in sorted((phantom / "FC13").glob("*.dcm"))[:1]:
            hu, px = load(f)
            cases.append((f"Canon {phantom.name} FC13 as B30f", hu, px, "B30f", "B70f"))
    with tempfile.TemporaryDirectory() as tmp:
        simulate(Path(tmp), SimulationConfig(slices=1, seed=9001), load_response_table())
        sim70, px = load(next((Path(tmp) / "patient-000" / "B70f").iterdir()))
        sim30, _ = load(next((Path(tmp) / "patient-000" / "B30f").iterdir()))
    cases.append(("simulated chest B70f", sim70, px, "B70f", "B30f"))
    cases.append(("simulated chest B30f", sim30, px, "B30f", "B70f"))
    print(f"model {selected.info.model_id if selected.info else '-'}; low-pass bias (output - "
          "input, HU, Gaussian sigma 2.5 mm) per region, and output/input noise")
    head = f"{'image':42s} {'engine':6s} {'soft':>7s} {'fat':>7s} {'lung':>7s} {'air':>7s}  noise"
    print(head)
    for label, hu, pixel, src, dst in cases:
        for ename, eng in (("model", model), ("filter", filt)):
            print(f"{label[:42]:42s} {ename:6s} {fmt(bias(eng, hu, pixel, src, dst))}")
    print("\ncauses, on the simulated B70f slice (model, B70f -> B30f):")
    base = model.convert(sim70[None], "B70f", "B30f", pixel_mm=px)[0]
    shifted = model.convert(sim70[None] + 50.0, "B70f", "B30f", pixel_mm=px)[0]
    body = ndimage.uniform_filter(sim70, 9) > -500
    print(f"  offset +50 HU: output moves by {np.mean((shifted - base)[body]):+.1f} HU in the "
          "body (a kernel change would move it by +50.0)")
    c = HuCheck()
    crop = sim70[128:384, 128:384]
    c.add(crop, model.convert(crop[None], "B70f", "B30f", pixel_mm=px)[0], px)
    print(f"  central 256 x 256 crop:  {fmt(c)}")
    canvas = np.full((768, 768), -1000.0, np.float32)
    canvas[128:640, 128:640] = sim70
    c = HuCheck()
    c.add(canvas, model.convert(canvas[None], "B70f", "B30f", pixel_mm=px)[0], px)
    print(f"  in a 768 x 768 air canvas: {fmt(c)}")
    fine = ndimage.zoom(sim70, px / 0.478516, order=1)[:512, :512]
    c = HuCheck()
    c.add(fine, model.convert(fine[None], "B70f", "B30f", pixel_mm=0.478516)[0], 0.478516)
    print(f"  resampled to 0.479 mm:   {fmt(c)}")
    hu, px_head = load(Path(str(get_testdata_file("693_UNCR.dcm"))))
    coarse = ndimage.zoom(hu, px_head / REFERENCE_PIXEL_MM, order=1)
    c = HuCheck()
    c.add(coarse, model.convert(coarse[None], "B70f", "B30f")[0], REFERENCE_PIXEL_MM)
    print(f"  GE head resampled to 0.684 mm ({coarse.shape[0]} px): {fmt(c)}")


if __name__ == "__main__":
    main()
