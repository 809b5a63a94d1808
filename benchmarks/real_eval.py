"""Evaluation on real images, as users meet them (issue 26, part 5; docs/real-scanners.md).

Every real pair the project has (the same raw data reconstructed with two kernels) is split
into parts: the Canon phantom into phantom1 and phantom2, the Siemens chest into the first and
the second half of its slice positions. Each part is converted in both directions with
`kernelconv convert`'s own path (``run_convert`` with the engine ``convert`` selects) and the
kernel names as stored in the files (no ``--from``), by:

  identity               the unchanged source image
  filter                 the filter with the built-in kernel table (no calibration)
  default model          the default model (no calibration)
  paired calibration     ``kernelconv calibrate --pair`` on the OTHER part, then
                         ``convert --method filter --kernel-table``
  unpaired calibration   ``kernelconv calibrate --unpaired ARCHIVE`` where ARCHIVE holds the
                         other part with each kernel from a different half of its slice
                         positions (no slice in both kernels), then ``--kernel-table``; "not
                         available" where ``kernelconv calibrate --help`` lists no --unpaired
  oracle (calibrate on the test part)   the same calibration fitted on the test part itself
  oracle (2-D LSQ FIR on the test part) a 15 x 15 least-squares linear filter fitted on the
                         test part itself (benchmarks/calibration_study.py), in memory,
                         rounded as convert stores

A conversion runs at convert's default HU-check limit; a refused series is converted again
without the limit so that it is still scored, and the "HU check passed" column counts the
accepted series. A conversion that convert refuses for another reason (a kernel the engine
does not know, say) is listed with that reason. The scores are benchmarks/model_eval.py's:
per slice PSNR and SSIM over [-1024, 3071] HU (range 4095), the low-pass bias per tissue
against the true target (kernelconv.hu_check's regions of the reference), noise ratio and the
LAA-950 difference; PSNR as the mean over slices with the per-slice SD, and beside every
method the paired per-slice difference to the oracle.

    python benchmarks/real_eval.py --canon examples/data/canon-phantom \\
        --siemens ../shared/data/real-ct-siemens-chest-pair/Lung_Dx-A0002 \\
        --json real-eval.json --markdown real-eval.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from calibration_study import fir_apply, fir_fit
from model_eval import _lung, fmt_difference, paired_difference, read_series, set_markdown

from kernelconv.cli import main as cli_main
from kernelconv.engines.select import EngineSpec, SelectedEngine, select_engine
from kernelconv.errors import KernelconvError
from kernelconv.evaluation.metrics import laa950, psnr, ssim
from kernelconv.hu_check import HuCheck
from kernelconv.pipeline import ConvertOptions, run_convert

NOT_AVAILABLE = "not available (kernelconv calibrate --help lists no --unpaired)"
FIR_SAMPLES = 100_000


@dataclass
class Part:
    """One part of a real pair: {kernel: folder of that kernel's slices}."""

    name: str
    folders: dict[str, Path]


@dataclass
class Pair:
    """A real pair split into parts, its kernels (sharp first) and where it came from."""

    name: str
    kernels: tuple[str, str]
    parts: list[Part]
    note: str = ""


@dataclass
class Outcome:
    """What one method did to one test part in one direction."""

    by_z: dict[float, np.ndarray] | None = None
    passed: bool | None = None
    reason: str = ""


@dataclass
class Row:
    """Scores of one method and direction, pooled over the test parts."""

    figures: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    reasons: list[str] = field(default_factory=list)


def _positions(folder: Path) -> list[tuple[float, Path]]:
    files = [p for p in sorted(folder.iterdir()) if p.is_file() or p.is_symlink()]
    return sorted(((float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]),
                    p) for p in files), key=lambda t: t[0])


def _link(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for p in files:
        (folder / p.name).symlink_to(p.resolve())
    return folder


def canon_pair(root: Path) -> Pair:
    return Pair(f"Canon phantom ({root})", ("FC51", "FC13"),
                [Part(ph, {k: root / ph / k for k in ("FC51", "FC13")})
                 for ph in ("phantom1", "phantom2")],
                "chest phantom, Toshiba/Canon Aquilion PRIME, 2 + 2 slices, 0.683 mm")


def halves_pair(name: str, root: Path, kernels: tuple[str, str], work: Path,
                note: str) -> Pair:
    """A pair whose one scan is split into the first and second half of its positions."""
    parts: dict[str, dict[str, Path]] = {"first half": {}, "second half": {}}
    for k in kernels:
        files = [p for _, p in _positions(root / k)]
        n = len(files) // 2
        parts["first half"][k] = _link(files[:n], work / name / "first" / k)
        parts["second half"][k] = _link(files[n:], work / name / "second" / k)
    return Pair(f"{name} ({root})", kernels, [Part(p, f) for p, f in parts.items()], note)


def _cli(args: list[object]) -> tuple[int, str]:
    """Run the kernelconv CLI in this process: (exit code, what it said on stderr's last
    line), output to the terminal suppressed."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            cli_main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    return code, lines[-1] if lines else ""


def unpaired_available() -> bool:
    out = subprocess.run([sys.executable, "-m", "kernelconv", "calibrate", "--help"],
                         capture_output=True, text=True, check=False).stdout
    return "--unpaired" in out


def calibrate_paired(part: Part, kernels: tuple[str, str], out: Path) -> Path | str:
    code, msg = _cli(["calibrate", "--pair", part.folders[kernels[0]],
                      part.folders[kernels[1]], "--out-table", out])
    return out if code == 0 else f"calibrate failed ({code}): {msg}"


def calibrate_unpaired(part: Part, kernels: tuple[str, str], work: Path) -> Path | str:
    """The archive: the first kernel from the first half of the part's positions, the second
    from the second half (a part of one slice position per kernel gives one slice each)."""
    archive = work / "archive"
    for i, k in enumerate(kernels):
        files = [p for _, p in _positions(part.folders[k])]
        n = max(1, len(files) // 2)
        _link(files[:n] if i == 0 else files[n:] or files[-1:], archive / k)
    out = work / "unpaired.json"
    code, msg = _cli(["calibrate", "--unpaired", archive, "--out-table", out])
    return out if code == 0 else \
        f"calibrate --unpaired failed ({code}): {msg.replace(str(archive), 'ARCHIVE')}"


def convert(selected: SelectedEngine, engines: dict[int, Any], source: Path, target: str,
            work: Path) -> Outcome:
    """`convert` of one series folder with its kernel as stored; the HU check's verdict at the
    default limit (a refused series is converted again without the limit, to be scored)."""
    def factory() -> Any:
        key = id(selected)
        # the selection is kept beside its engine: an id is only unique among live objects,
        # and a calibration's selection of an earlier part may be gone
        if key not in engines or engines[key][0] is not selected:
            engines[key] = (selected, selected.factory())
        return engines[key][1]

    passed = None
    for max_bias in (ConvertOptions(target=target).max_bias, float("inf")):
        out = Path(tempfile.mkdtemp(dir=work))
        try:
            report = run_convert(source, out, factory, selected.domains,
                                 ConvertOptions(target=target, max_bias=max_bias),
                                 owner=selected.owner)
        except KernelconvError as exc:  # e.g. a usage error: the whole conversion refused
            return Outcome(reason=f"refused: {str(exc).splitlines()[0]}")
        (result,) = report.results
        if passed is None and result.hu_check is not None:
            passed = bool(result.hu_check["passed"])
        if result.status == "converted":
            return Outcome(read_series(Path(result.output))[0], passed)
        if result.hu_check is None:
            return Outcome(reason=f"{result.status}: {result.reason}")
    return Outcome(reason=f"{result.status}: {result.reason}")


def score(row: Row, pred: dict[float, np.ndarray], ref: dict[float, np.ndarray],
          px: float, part: str) -> None:
    """model_eval.evaluate's scores of one converted series against its true target."""
    check = HuCheck()
    for z in sorted(set(ref) & set(pred)):
        p, r = np.clip(pred[z], -1024, 3071), np.clip(ref[z], -1024, 3071)
        row.figures["psnr_slices"].append(psnr(p, r))
        row.figures["slice_keys"].append(f"{part} z {z:g}")
        row.figures["ssim_slices"].append(ssim(p, r))
        check.add(r, p, px)
        lung = _lung(r, px)
        if lung.sum() > 500:
            row.figures["laa"].append(laa950(p, lung) - laa950(r, lung))
    for region, bias in check.bias_hu.items():
        if bias is not None and region != "air":
            row.figures[f"bias {region}"].append(bias)
    if check.noise_ratio is not None:
        row.figures["noise ratio"].append(check.noise_ratio)


def summarise(row: Row) -> dict[str, Any] | None:
    """model_eval's per-direction figures (None where nothing was converted)."""
    m = dict(row.figures)
    psnrs = m.pop("psnr_slices", [])
    if not psnrs:
        return None
    f: dict[str, Any] = {"n": len(psnrs), "psnr": float(np.mean(psnrs)),
                         "psnr_sd": float(np.std(psnrs, ddof=1)) if len(psnrs) > 1 else None,
                         "psnr_slices": psnrs, "slice_keys": m.pop("slice_keys"),
                         "ssim_slices": m.pop("ssim_slices")}
    f["ssim"] = float(np.mean(f["ssim_slices"]))
    if "hu_check_passed" in m:
        f["hu_check_passed"] = m.pop("hu_check_passed")
    f.update({k: float(np.mean(v)) if v else None for k, v in m.items()})
    return f


METHODS = ["identity", "filter (built-in table)", "default model", "paired calibration",
           "unpaired calibration", "oracle: calibrate on the test part",
           "oracle: 2-D LSQ FIR on the test part"]
ORACLE = "oracle: calibrate on the test part"


def evaluate_pair(pair: Pair, work: Path, unpaired: bool,
                  models: tuple[str, ...] = (),
                  trained_on: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Every method on every part of one pair, both directions; ``models``: more models
    (NAME|PATH), each scored as "model NAME" beside the default; ``trained_on``: (PART, model)
    for a model fitted on one part of this pair (a site fine-tune), scored on the other parts
    only, as "model NAME (trained on PART)"."""
    builtin_filter = select_engine(EngineSpec(method="filter"))
    model = select_engine(EngineSpec(device="cpu"))
    extra = {f"model {Path(m).name.removesuffix('.safetensors')}":
             select_engine(EngineSpec(model=m, device="cpu")) for m in models}
    excluded: dict[str, str] = {}  # row name -> the part it was trained on
    for part, m in trained_on:
        if part not in [p.name for p in pair.parts]:
            continue  # a model of another pair
        name = f"model {Path(m).name.removesuffix('.safetensors')} (trained on {part})"
        extra[name] = select_engine(EngineSpec(model=m, device="cpu"))
        excluded[name] = part
    engines: dict[int, Any] = {}
    rows: dict[str, dict[str, Row]] = {m: defaultdict(Row) for m in [*METHODS, *extra]}
    sharp, soft = pair.kernels
    for i, test in enumerate(pair.parts):
        others = [p for j, p in enumerate(pair.parts) if j != i]
        cal = others[0]  # two parts: the other one
        pw = work / f"part{i}"
        pw.mkdir(parents=True)
        tables: dict[str, Path | str] = {
            "paired calibration": calibrate_paired(cal, pair.kernels, pw / "paired.json"),
            ORACLE: calibrate_paired(test, pair.kernels, pw / "oracle.json"),
            "unpaired calibration": calibrate_unpaired(cal, pair.kernels, pw) if unpaired
            else NOT_AVAILABLE}
        selected: dict[str, SelectedEngine | str | None] = {
            "identity": None, "filter (built-in table)": builtin_filter, "default model": model,
            **extra}
        for name, table in tables.items():
            selected[name] = table if isinstance(table, str) else select_engine(
                EngineSpec(method="filter", kernel_table=table))
        for src, dst in ((sharp, soft), (soft, sharp)):
            direction = f"{src} -> {dst}"
            ref, px, _ = read_series(test.folders[dst])
            x, _, _ = read_series(test.folders[src])
            for name, sel in selected.items():
                if excluded.get(name) == test.name:
                    continue  # its training slices: never scored
                row = rows[name][direction]
                if isinstance(sel, str):
                    row.reasons.append(f"{test.name}: {sel}")
                    continue
                if sel is None:
                    outcome = Outcome(x)
                else:
                    outcome = convert(sel, engines, test.folders[src], dst, work)
                if outcome.by_z is None:
                    row.reasons.append(f"{test.name}: {outcome.reason}")
                    continue
                score(row, outcome.by_z, ref, px, test.name)
                if outcome.passed is not None:
                    row.figures["hu_check_passed"].append(outcome.passed)
            zs = sorted(ref)
            xs, ys = np.stack([x[z] for z in zs]), np.stack([ref[z] for z in zs])
            fir = fir_apply(xs, fir_fit(xs, ys, samples=FIR_SAMPLES))
            score(rows["oracle: 2-D LSQ FIR on the test part"][direction],
                  dict(zip(zs, np.round(fir), strict=True)), ref, px, test.name)
    out: dict[str, Any] = {}
    for name, by_direction in rows.items():
        figs = {d: summarise(r) for d, r in by_direction.items()}
        out[name] = {d: f for d, f in figs.items() if f is not None}
        missing = {d: r.reasons for d, r in by_direction.items() if r.reasons}
        if missing:
            out.setdefault("_not_converted", {})[name] = missing
    return out


def _difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Paired per-slice PSNR difference a - b over the slices both scored."""
    pb = dict(zip(b["slice_keys"], b["psnr_slices"], strict=True))
    common = [(v, pb[k]) for k, v in zip(a["slice_keys"], a["psnr_slices"], strict=True)
              if k in pb]
    if not common:
        return "-"
    return fmt_difference(paired_difference([v for v, _ in common], [w for _, w in common]))


def pair_markdown(pair: Pair, figures: dict[str, Any]) -> list[str]:
    """model_eval's table of the scored methods, the paired differences to the oracle, and
    what was not converted, with the reason."""
    scored = {k: v for k, v in figures.items() if not k.startswith("_") and v}
    lines = set_markdown(f"{pair.name}: {pair.note}", scored)
    lines = [ln.replace("PSNR difference to the filter", "PSNR difference to the built-in "
                        "filter") for ln in lines]
    oracle = scored.get(ORACLE)
    if oracle:
        directions = list(oracle)
        lines += ["PSNR difference to the oracle (calibrate on the test part), dB: mean of the "
                  "paired per-slice differences (their SD, bootstrap 95% interval, slices)", "",
                  "| method | " + " | ".join(directions) + " |",
                  "|---|" + "---|" * len(directions)]
        for label, by_direction in scored.items():
            if label == ORACLE:
                continue
            cells = [_difference(by_direction[d], oracle[d]) if d in by_direction else "-"
                     for d in directions]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    for label, missing in figures.get("_not_converted", {}).items():
        for direction, reasons in missing.items():
            lines.append(f"- {label}, {direction}: not converted ({'; '.join(reasons)})")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canon", type=Path, help="the Canon phantom pairs (phantom1/, phantom2/)")
    ap.add_argument("--siemens", type=Path, help="the Siemens chest pair (B40f/, B70f/)")
    ap.add_argument("--model", action="append", default=[],
                    help="another model NAME|PATH to score beside the default (repeatable)")
    ap.add_argument("--model-trained-on", nargs=2, action="append", default=[],
                    metavar=("PART", "MODEL"),
                    help="a model fitted on one part of a pair (e.g. 'first half' of the "
                         "Siemens chest, 'phantom1'): scored on the other parts only")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    unpaired = unpaired_available()
    results: dict[str, Any] = {"unpaired_calibration": "available" if unpaired
                               else NOT_AVAILABLE}
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kc-real-eval-") as tmp:
        work = Path(tmp)
        pairs = []
        if args.canon:
            pairs.append(canon_pair(args.canon))
        if args.siemens:
            n = len([p for p in (args.siemens / "B70f").iterdir()])
            pairs.append(halves_pair("Siemens chest", args.siemens, ("B70f", "B40f"), work,
                                     f"patient, SOMATOM Sensation 10, {n} slices of 8 mm, "
                                     "0.646 mm, split into halves"))
        for k, pair in enumerate(pairs):
            results[pair.name] = evaluate_pair(
                pair, work / f"pair{k}", unpaired, tuple(args.model),
                tuple((part, m) for part, m in args.model_trained_on))
            if args.json:  # as soon as it is measured
                args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
            lines += pair_markdown(pair, results[pair.name])
    if not unpaired:
        lines.append(f"Unpaired calibration: {NOT_AVAILABLE}.")
    text = "\n".join(lines)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
