"""Identity, the classical filter and models side by side on held-out paired data, through
`kernelconv convert`'s own path.

Each data set is a folder of paired series of the same scan (simulated patients, re-simulated
real anatomy) or the real Canon phantom pairs (FC51 read as B70f, FC13 as B30f). Every method
converts every series in every direction between the kernels present exactly as a user's
`kernelconv convert` does: `run_convert` with the engine from `select_engine`, into a
temporary folder (the input as stored, the derived DICOM written with its stored-integer
rounding); the written files are read back and scored against the true target series, slice
by slice (paired by position). The identity row is the source series as stored, unchanged.

A conversion runs with convert's default HU-check limit first; a series the check refuses is
converted again with no limit (`max_bias=inf`) so that it is still scored, and the table marks
it (`HU check` column: how many of the direction's series the check passed at the default
limit). Per direction:

  slices        number of slice positions scored
  PSNR          mean over slices, and the per-slice SD; HU clipped to [-1024, 3071], range 4095
  SSIM          mean over slices, same clipping
  bias          low-pass (sigma 2.5 mm) mean of prediction - reference in soft tissue, fat and
                lung of the reference (kernelconv.hu_check), HU
  noise ratio   prediction's noise / the reference's (residual after the same low-pass, soft
                tissue)
  LAA-950       difference in percentage points (lung: reference below -400 HU in the body)

and, for every method beside the filter, the paired per-slice PSNR difference method - filter:
its mean, the SD of the per-slice differences, and a percentile bootstrap 95% interval of the
mean (10 000 resamples of the slices, seed 0; shown from 5 slices up). Slices of one patient
are not independent samples: read an interval from a set with few patients as optimistic.

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
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from kernelconv.dicom.dataset import decode_hu, pixel_spacing_mm
from kernelconv.dicom.discovery import Series, discover
from kernelconv.engines.select import EngineSpec, SelectedEngine, select_engine
from kernelconv.evaluation.metrics import laa950, psnr, ssim
from kernelconv.evaluation.qa import measure_images
from kernelconv.hu_check import HuCheck, lowpass
from kernelconv.kernel_response import REFERENCE_PIXEL_MM
from kernelconv.pipeline import ConvertOptions, run_convert

DIRECTIONS = [("B50f", "B30f"), ("B70f", "B30f"), ("B70f", "B50f"),
              ("B30f", "B50f"), ("B30f", "B70f"), ("B50f", "B70f")]
PHANTOM_KERNELS = {"FC51": "B70f", "FC13": "B30f"}
BOOTSTRAP = 10_000
MIN_SLICES_FOR_INTERVAL = 5

#: one scan's series by (model) kernel
Scan = dict[str, Series]


@dataclass
class Method:
    """A row of the table: how to get one series converted (None: identity, the source)."""

    label: str
    selected: SelectedEngine | None
    engine: Any = None

    def factory(self) -> Any:
        if self.engine is None:  # built once, on first use, and reused for every series
            assert self.selected is not None
            self.engine = self.selected.factory()
        return self.engine


def read_series(series: Series | Path) -> tuple[dict[float, np.ndarray], float, Any]:
    """{z rounded to 0.01 mm: HU slice}, the pixel spacing and the first file's header."""
    paths = ([sl.path for sl in series.slices] if isinstance(series, Series)
             else sorted(p for p in series.rglob("*") if p.is_file()))
    by_z: dict[float, np.ndarray] = {}
    first = None
    for path in paths:
        ds = pydicom.dcmread(path)
        if first is None:
            first = ds
        z = float(ds.ImagePositionPatient[2]) if "ImagePositionPatient" in ds else 0.0
        by_z[round(z, 2)] = decode_hu(ds, path)[1][0]
    if first is None:
        raise ValueError(f"{series}: no images")
    return by_z, pixel_spacing_mm(first) or REFERENCE_PIXEL_MM, first


def paired_series(folder: Path, aliases: dict[str, str] | None = None) -> list[Scan]:
    """Scans as {kernel: series}, paired by study (or, for the phantom's differently-UID'd
    exports, by parent folder); kernels renamed by ``aliases``."""
    groups: dict[str, Scan] = defaultdict(dict)
    for series in discover(folder).series:
        kernel = (aliases or {}).get(series.kernel or "", series.kernel or "?")
        key = series.study_uid if aliases is None else str(Path(series.folder).parent)
        groups[key][kernel] = series
    return [kernels for kernels in groups.values() if len(kernels) >= 2]


def paired_scans(folder: Path, aliases: dict[str, str] | None = None
                 ) -> list[dict[str, tuple[np.ndarray, float]]]:
    """The same scans read into memory, {kernel: (slices (n, H, W) at the positions all
    kernels share, pixel mm)}: for benchmarks that convert in memory (texture_eval.py)."""
    scans = []
    for scan in paired_series(folder, aliases):
        read = {k: read_series(series) for k, series in scan.items()}
        common = sorted(set.intersection(*(set(by_z) for by_z, _, _ in read.values())))
        if common:
            scans.append({k: (np.stack([by_z[z] for z in common]), px)
                          for k, (by_z, px, _) in read.items()})
    return scans


class Identity:
    """The unchanged image, as an in-memory engine (texture_eval.py)."""

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = REFERENCE_PIXEL_MM) -> np.ndarray:
        return hu.astype(np.float32)


def convert_series(method: Method, series: Series, source: str, target: str, work: Path
                   ) -> tuple[dict[float, np.ndarray], bool | None]:
    """The series converted as `kernelconv convert` writes it, read back ({z: HU}), and
    whether the HU check passed at convert's default limit (None for the identity)."""
    if method.selected is None:
        return read_series(series)[0], None
    src = Path(tempfile.mkdtemp(dir=work))
    for sl in series.slices:  # the series alone, whatever else shares its folder
        (src / sl.path.name).symlink_to(sl.path.resolve())
    passed = None
    for max_bias in (ConvertOptions(target=target).max_bias, float("inf")):
        out = Path(tempfile.mkdtemp(dir=work))
        report = run_convert(src, out, method.factory, method.selected.domains,
                             ConvertOptions(target=target, source_override=source,
                                            max_bias=max_bias),
                             owner=method.selected.owner)
        (result,) = report.results
        if passed is None and result.hu_check is not None:
            passed = bool(result.hu_check["passed"])
        if result.status == "converted":
            return read_series(Path(result.output))[0], passed
    raise RuntimeError(f"{method.label} {source} -> {target} of {series.folder}: "
                       f"{result.status}: {result.reason}")


def _lung(ref: np.ndarray, pixel: float) -> np.ndarray:
    from kernelconv.hu_check import _body

    lp = lowpass(ref, pixel)
    return (lp < -400.0) & _body(lp)


def paired_difference(a: list[float], b: list[float]) -> dict[str, float | int | None]:
    """Per-slice differences a - b: their number, mean, SD and a bootstrap 95% interval of
    the mean (None where too few slices)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    out: dict[str, float | int | None] = {"n": int(d.size), "mean": float(d.mean()),
                                          "sd": float(d.std(ddof=1)) if d.size > 1 else None,
                                          "ci95": None}
    if d.size >= MIN_SLICES_FOR_INTERVAL:
        rng = np.random.default_rng(0)
        means = d[rng.integers(0, d.size, (BOOTSTRAP, d.size))].mean(axis=1)
        out["ci95"] = [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
    return out


def fmt_difference(d: dict[str, Any]) -> str:
    """'+0.49 (SD 0.07, 95% +0.44..+0.54, n 8)'."""
    parts = [f"SD {d['sd']:.2f}" if d["sd"] is not None else "no SD"]
    if d["ci95"] is not None:
        parts.append(f"95% {d['ci95'][0]:+.2f}..{d['ci95'][1]:+.2f}")
    return f"{d['mean']:+.2f} ({', '.join(parts)}, n {d['n']})"


def evaluate(method: Method, scans: list[Scan], work: Path) -> dict[str, dict[str, Any]]:
    """Per direction: per-slice PSNR/SSIM (in a fixed order: scan, then slice position), their
    mean and SD, the mean bias, noise ratio and LAA-950 difference, and the HU checks."""
    acc: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for scan in scans:
        for src, dst in DIRECTIONS:
            if src not in scan or dst not in scan:
                continue
            ref_by_z, px, _ = read_series(scan[dst])
            pred_by_z, passed = convert_series(method, scan[src], src, dst, work)
            name = f"{src} -> {dst}"
            check = HuCheck()
            for z in sorted(set(ref_by_z) & set(pred_by_z)):
                p = np.clip(pred_by_z[z], -1024, 3071)
                r = np.clip(ref_by_z[z], -1024, 3071)
                acc[name]["psnr_slices"].append(psnr(p, r))
                acc[name]["ssim_slices"].append(ssim(p, r))
                check.add(r, p, px)
                lung = _lung(r, px)
                if lung.sum() > 500:
                    acc[name]["laa"].append(laa950(p, lung) - laa950(r, lung))
            for region, bias in check.bias_hu.items():
                if bias is not None and region != "air":
                    acc[name][f"bias {region}"].append(bias)
            if check.noise_ratio is not None:
                acc[name]["noise ratio"].append(check.noise_ratio)
            if passed is not None:
                acc[name]["hu_check_passed"].append(passed)
    out: dict[str, dict[str, Any]] = {}
    for direction, m in acc.items():
        psnrs = m.pop("psnr_slices")
        f: dict[str, Any] = {"n": len(psnrs), "psnr": float(np.mean(psnrs)),
                             "psnr_sd": float(np.std(psnrs, ddof=1)) if len(psnrs) > 1
                             else None,
                             "psnr_slices": psnrs, "ssim_slices": m.pop("ssim_slices")}
        f["ssim"] = float(np.mean(f["ssim_slices"]))
        if "hu_check_passed" in m:
            f["hu_check_passed"] = m.pop("hu_check_passed")
        f.update({k: float(np.mean(v)) if v else None for k, v in m.items()})
        out[direction] = f
    return out


def qa_mtf50(method: Method, folder: Path, work: Path) -> dict[str, dict[str, float]]:
    """Per direction: MTF50 (lp/cm) of the converted QA phantom, of the true target series and
    their ratio."""
    series = {s.kernel: s for s in discover(folder).series}
    read = {k: read_series(s) for k, s in series.items()}
    true = {k: measure_images(k, str(folder), [by_z[z] for z in sorted(by_z)], ds).mtf.mtf50
            for k, (by_z, _, ds) in read.items()}
    out = {}
    for src, dst in DIRECTIONS:
        if src not in read or dst not in read:
            continue
        pred, _ = convert_series(method, series[src], src, dst, work)
        got = measure_images(dst, str(folder), [pred[z] for z in sorted(pred)],
                             read[src][2]).mtf.mtf50
        out[f"{src} -> {dst}"] = {"mtf50": got, "mtf50 target": true[dst],
                                  "ratio": got / true[dst]}
    return out


def set_markdown(name: str, figures: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One data set's tables: every method and direction, then each method against the
    filter."""
    n_max = max(f["n"] for m in figures.values() for f in m.values())
    lines = [f"### {name} (up to {n_max} slice positions per direction)", "",
             "| method | direction | slices | PSNR dB (per-slice SD) | SSIM | bias soft/fat/lung "
             "HU | noise ratio | LAA-950 diff pp | HU check passed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, by_direction in figures.items():
        for direction, f in by_direction.items():
            def fmt(key: str, digits: int = 2, f: dict[str, Any] = f) -> str:
                v = f.get(key)
                return "-" if v is None else f"{v:.{digits}f}"

            sd = "" if f["psnr_sd"] is None else f" ({f['psnr_sd']:.2f})"
            checks = f.get("hu_check_passed")
            passed = "-" if checks is None else f"{sum(checks)}/{len(checks)}"
            lines.append(f"| {label} | {direction} | {f['n']} | {f['psnr']:.2f}{sd} | "
                         f"{fmt('ssim', 4)} | {fmt('bias soft tissue', 1)}/{fmt('bias fat', 1)}/"
                         f"{fmt('bias lung', 1)} | {fmt('noise ratio')} | {fmt('laa')} | "
                         f"{passed} |")
    others = [k for k in figures if k not in ("identity", "filter")]
    if "filter" in figures and others:
        directions = list(figures["filter"])
        lines += ["", "PSNR difference to the filter, dB: mean of the paired per-slice "
                  "differences (their SD, bootstrap 95% interval of the mean, slices)", "",
                  "| method | " + " | ".join(directions) + " |",
                  "|---|" + "---|" * len(directions)]
        for label in others:
            lines.append(f"| {label} | " + " | ".join(
                fmt_difference(paired_difference(figures[label][d]["psnr_slices"],
                                                 figures["filter"][d]["psnr_slices"]))
                for d in directions) + " |")
    return lines + [""]


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
    sets = {str(d): paired_series(d) for d in args.data}
    if args.phantom:
        sets[f"{args.phantom} (FC51 as B70f, FC13 as B30f)"] = paired_series(args.phantom,
                                                                          PHANTOM_KERNELS)
    methods = [Method("identity", None),
               Method("filter", select_engine(EngineSpec(method="filter")))]
    for m in args.model:
        selected = select_engine(EngineSpec(model=m, device="cpu"))
        methods.append(Method(f"model {selected.info.name if selected.info else m}", selected))
    results: dict[str, dict[str, Any]] = {}
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kc-model-eval-") as tmp:
        work = Path(tmp)
        for set_name, scans in sets.items():
            results[set_name] = {m.label: evaluate(m, scans, work) for m in methods}
            lines += set_markdown(set_name, results[set_name])
        if args.qa:
            results["qa"] = {}
            lines += [f"### MTF50 of the converted QA phantom ({args.qa}), lp/cm: result / true "
                      "target (ratio)", "", "| method | " + " | ".join(
                          f"{a}->{b}" for a, b in DIRECTIONS) + " |",
                      "|---|" + "---|" * len(DIRECTIONS)]
            for m in methods:
                q = results["qa"][m.label] = qa_mtf50(m, args.qa, work)
                cell: Callable[[str], str] = lambda d, q=q: (  # noqa: E731
                    f"{q[d]['mtf50']:.2f} / {q[d]['mtf50 target']:.2f} ({q[d]['ratio']:.2f})"
                    if d in q else "-")
                lines.append(f"| {m.label} | " + " | ".join(cell(f"{a} -> {b}")
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
