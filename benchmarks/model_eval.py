"""Identity, the classical filter and models side by side on held-out paired data, in memory.

Each data set is a folder of paired series of the same scan (simulated patients, re-simulated
real anatomy) or the real Canon phantom pairs (FC51 read as B70f, FC13 as B30f). Every method
converts every slice in every direction between the kernels present, through the same engine
code as `kernelconv convert`; then per direction:

  PSNR / SSIM   against the true target kernel, HU clipped to [-1024, 3071], range 4095
  bias          low-pass (sigma 2.5 mm) mean of prediction - reference in soft tissue, fat and
                lung of the reference (kernelconv.hu_check), HU
  noise ratio   prediction's noise / the reference's (residual after the same low-pass, soft
                tissue)
  LAA-950       difference in percentage points (lung: reference below -400 HU in the body)

With --qa DIR (a simulated QA phantom in every kernel: `kernelconv simulate DIR --phantom qa`),
each method also converts the phantom in every direction and `kernelconv qa`'s circular-edge
measurement gives the MTF50 of the result beside the true target kernel's (ratio 1 = right).

    python benchmarks/model_eval.py --data heldout/sim-reference --data heldout/resim \\
        --phantom ../shared/data/real-ct-canon-phantom --model resim-fr-v1 --model sim-paired-v1 \\
        --json eval.json --markdown eval.md --qa heldout/qa
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from kernelconv.dicom.dataset import decode_hu, pixel_spacing_mm
from kernelconv.dicom.discovery import discover
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.engines.select import EngineSpec, select_engine
from kernelconv.evaluation.metrics import laa950, psnr, ssim
from kernelconv.evaluation.qa import measure_images
from kernelconv.hu_check import HuCheck, lowpass
from kernelconv.kernel_response import REFERENCE_PIXEL_MM

DIRECTIONS = [("B50f", "B30f"), ("B70f", "B30f"), ("B70f", "B50f"),
              ("B30f", "B50f"), ("B30f", "B70f"), ("B50f", "B70f")]
PHANTOM_KERNELS = {"FC51": "B70f", "FC13": "B30f"}


class Identity:
    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = REFERENCE_PIXEL_MM) -> np.ndarray:
        return hu.astype(np.float32)


def _read(path: Path) -> tuple[np.ndarray, float, float]:
    ds = pydicom.dcmread(path)
    hu = decode_hu(ds, path)[1][0]
    z = float(ds.ImagePositionPatient[2]) if "ImagePositionPatient" in ds else 0.0
    return hu, pixel_spacing_mm(ds) or REFERENCE_PIXEL_MM, z


def paired_scans(folder: Path, aliases: dict[str, str] | None = None
                 ) -> list[dict[str, tuple[np.ndarray, float]]]:
    """Scans as {kernel: (slices (n, H, W), pixel mm)}, paired by study (or, for the phantom's
    differently-UID'd exports, by parent folder) and slice position."""
    groups: dict[str, dict[str, dict[float, tuple[np.ndarray, float]]]] = defaultdict(dict)
    for series in discover(folder).series:
        kernel = (aliases or {}).get(series.kernel or "", series.kernel or "?")
        key = series.study_uid if aliases is None else str(Path(series.folder).parent)
        by_z = {}
        for sl in series.slices:
            hu, px, z = _read(sl.path)
            by_z[round(z, 2)] = (hu, px)
        groups[key][kernel] = by_z
    scans = []
    for kernels in groups.values():
        common = sorted(set.intersection(*(set(v) for v in kernels.values())))
        if len(kernels) < 2 or not common:
            continue
        scans.append({k: (np.stack([v[z][0] for z in common]), v[common[0]][1])
                      for k, v in kernels.items()})
    return scans


def _lung(ref: np.ndarray, pixel: float) -> np.ndarray:
    from kernelconv.hu_check import _body

    lp = lowpass(ref, pixel)
    return (lp < -400.0) & _body(lp)


def evaluate(engine: Any, scans: list[dict[str, tuple[np.ndarray, float]]]
             ) -> dict[str, dict[str, float | None]]:
    """Per direction: the mean figures over all slices of all scans."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for scan in scans:
        for src, dst in DIRECTIONS:
            if src not in scan or dst not in scan:
                continue
            (x, px), (ref, _) = scan[src], scan[dst]
            pred = np.clip(engine.convert(np.clip(x, -1024, 3071), src, dst, px), -1024, 3071)
            name = f"{src} -> {dst}"
            check = HuCheck()
            for p, r in zip(pred, ref, strict=True):
                r = np.clip(r, -1024, 3071)
                acc[name]["psnr"].append(psnr(p, r))
                acc[name]["ssim"].append(ssim(p, r))
                check.add(r, p, px)
                lung = _lung(r, px)
                if lung.sum() > 500:
                    acc[name]["laa"].append(laa950(p, lung) - laa950(r, lung))
            for region, bias in check.bias_hu.items():
                if bias is not None and region != "air":
                    acc[name][f"bias {region}"].append(bias)
            if check.noise_ratio is not None:
                acc[name]["noise ratio"].append(check.noise_ratio)
    return {d: {k: float(np.mean(v)) if v else None for k, v in m.items()}
            for d, m in acc.items()}


def qa_mtf50(engine: Any, folder: Path) -> dict[str, dict[str, float]]:
    """Per direction: MTF50 (lp/cm) of the converted QA phantom, of the true target series and
    their ratio."""
    series = {s.kernel: s for s in discover(folder).series}
    read = {k: [_read(sl.path) for sl in s.slices] for k, s in series.items()}
    first = {k: pydicom.dcmread(s.slices[0].path, stop_before_pixels=True)
             for k, s in series.items()}
    true = {k: measure_images(k, str(folder), [hu for hu, _, _ in read[k]], first[k]).mtf.mtf50
            for k in read}
    out = {}
    for src, dst in DIRECTIONS:
        if src not in read or dst not in read:
            continue
        x = np.stack([hu for hu, _, _ in read[src]])
        px = read[src][0][1]
        pred = np.clip(engine.convert(np.clip(x, -1024, 3071), src, dst, px), -1024, 3071)
        got = measure_images(dst, str(folder), list(pred), first[src]).mtf.mtf50
        out[f"{src} -> {dst}"] = {"mtf50": got, "mtf50 target": true[dst],
                                  "ratio": got / true[dst]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, action="append", default=[],
                    help="folder of paired series (repeatable)")
    ap.add_argument("--phantom", type=Path, help="the real Canon phantom pairs folder")
    ap.add_argument("--model", action="append", default=[], help="model NAME|PATH (repeatable)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--qa", type=Path, help="a simulated QA phantom in every kernel")
    args = ap.parse_args()
    sets = {str(d): paired_scans(d) for d in args.data}
    if args.phantom:
        sets[f"{args.phantom} (FC51 as B70f, FC13 as B30f)"] = paired_scans(args.phantom,
                                                                         PHANTOM_KERNELS)
    methods: dict[str, Any] = {"identity": Identity(), "filter": FilterEngine()}
    for m in args.model:
        selected = select_engine(EngineSpec(model=m, device="cpu"))
        methods[f"model {selected.info.name if selected.info else m}"] = selected.factory()
    results: dict[str, dict[str, Any]] = {}
    lines = []
    for set_name, scans in sets.items():
        results[set_name] = {}
        lines += [f"### {set_name} ({sum(len(next(iter(s.values()))[0]) for s in scans)} "
                  "slice positions)", "",
                  "| method | direction | PSNR dB | SSIM | bias soft/fat/lung HU | noise ratio |"
                  " LAA-950 diff pp |", "|---|---|---|---|---|---|---|"]
        for label, engine in methods.items():
            figures = evaluate(engine, scans)
            results[set_name][label] = figures
            for direction, f in figures.items():
                def fmt(key: str, digits: int = 2, f: dict = f) -> str:  # type: ignore[type-arg]
                    v = f.get(key)
                    return "-" if v is None else f"{v:.{digits}f}"

                lines.append(f"| {label} | {direction} | {fmt('psnr')} | {fmt('ssim', 4)} | "
                             f"{fmt('bias soft tissue', 1)}/{fmt('bias fat', 1)}/"
                             f"{fmt('bias lung', 1)} | {fmt('noise ratio')} | {fmt('laa')} |")
        lines.append("")
    if args.qa:
        results["qa"] = {}
        lines += [f"### MTF50 of the converted QA phantom ({args.qa}), lp/cm: result / true "
                  "target (ratio)", "", "| method | " + " | ".join(f"{a}->{b}" for a, b in
                                                              DIRECTIONS) + " |",
                  "|---|" + "---|" * len(DIRECTIONS)]
        for label, engine in methods.items():
            q = results["qa"][label] = qa_mtf50(engine, args.qa)
            lines.append(f"| {label} | " + " | ".join(
                f"{q[f'{a} -> {b}']['mtf50']:.2f} / {q[f'{a} -> {b}']['mtf50 target']:.2f} "
                f"({q[f'{a} -> {b}']['ratio']:.2f})" if f"{a} -> {b}" in q else "-"
                for a, b in DIRECTIONS) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
