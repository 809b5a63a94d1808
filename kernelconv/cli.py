"""The ``kernelconv`` command line: thin click commands that parse, call a service, render.

Errors users can cause print one line on stderr and exit with a documented code
(kernelconv.errors; docs/usage.md). Nothing here holds conversion logic.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from kernelconv import __version__
from kernelconv.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_SERIES_FAILED,
    InputError,
    KernelconvError,
    UsageError,
)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _fail(message: str, code: int) -> None:
    # plain print: one line, never wrapped, never a traceback
    print(f"kernelconv: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="kernelconv")
def cli() -> None:
    """Convert CT images between reconstruction kernels (e.g. sharp B70f -> soft B30f).

    DICOM in, DICOM out: each converted series is written as a new, derived series. The model
    is the GGCL StarGAN generator of Choi et al., MICCAI 2023.

    \b
    Examples:
      kernelconv convert scans/ converted/ --to B30f
      kernelconv convert scans/ converted/ --to B30f --dry-run
      kernelconv models
    """


class _RichProgress:
    """Adapter from the pipeline's progress protocol to a rich progress display."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def start(self, label: str, total: int) -> Any:
        return self.progress.add_task(label, total=total)

    def advance(self, token: Any, n: int) -> None:
        self.progress.advance(token, n)

    def finish(self, token: Any) -> None:
        self.progress.refresh()


def _dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, (0, 1, 0) otherwise."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        return 0, 1, 0


CONVERT_EPILOG = """
\b
Examples:
  kernelconv convert in/ out/ --to B30f
  kernelconv convert in/ out/ --to B70f --from B30f --model my-model
  kernelconv convert in/ out/ --to B30f --method filter
  kernelconv convert in/ out/ --to B30f --kernel-map site-kernels.txt --preview out/check.png
  kernelconv convert in/ out/ --to B30f --device cuda --precision bf16 --batch-size 16
  torchrun --nproc-per-node 4 -m kernelconv convert archive/ out/ --to B30f

\b
Output: OUT/<StudyInstanceUID>/<target>_<new SeriesInstanceUID>/<source file name>,
plus OUT/kernelconv-report.json. Exit codes: 0 all converted or skipped, 1 a series
failed, 2 usage, 3 model, 4 input, 5 output, 70 internal error.
"""


@cli.command(epilog=CONVERT_EPILOG)
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--to", "target", required=True, metavar="KERNEL",
              help="Target kernel, one of the model's kernels (e.g. B30f).")
@click.option("--from", "source", metavar="KERNEL",
              help="Source kernel for every series, overriding ConvolutionKernel (0018,1210).")
@click.option("--method", type=click.Choice(["model", "filter"]), default="model",
              show_default=True,
              help="model: the GGCL generator. filter: the classical MTF-ratio baseline "
                   "(Ohkubo et al.; an extension beyond the paper) between the kernels of the "
                   "simulator's kernel table; needs no model.")
@click.option("--model", metavar="NAME|PATH",
              help="Model name (see `kernelconv models`) or a model file; default: the "
                   "default model.")
@click.option("--kernel-map", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File of 'ALIAS = KERNEL' lines adding kernel names to the table.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
              show_default=True, help="Autocast precision on CUDA; the CPU always runs fp32.")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default=None,
              help="Run the model with PyTorch [default] or ONNX Runtime (pip install "
                   "'kernelconv[onnx]'; CUDA provider with onnxruntime-gpu; faster on CPU, "
                   "docs/performance.md). A .onnx --model always runs with onnx.")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=4, show_default=True,
              help="Slices per forward pass.")
@click.option("--series-number-offset", type=click.IntRange(0, 1_000_000), default=1000,
              show_default=True, help="Derived SeriesNumber = source SeriesNumber + this.")
@click.option("--overwrite", is_flag=True, help="Redo series whose output already exists.")
@click.option("--dry-run", is_flag=True, help="List what would be done; write nothing.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report path [default: OUT/kernelconv-report.json].")
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Write a PNG montage (source, converted, difference) of a middle slice "
                   "per converted series, lung window WL -700 / WW 1500.")
def convert(
    input_path: Path, output_path: Path, target: str, source: str | None, method: str,
    model: str | None,
    kernel_map: Path | None, device: str, precision: str, backend: str | None, batch_size: int,
    series_number_offset: int, overwrite: bool, dry_run: bool, report_path: Path | None,
    preview: Path | None,
) -> None:
    """Convert every CT series under IN to kernel --to, writing derived series under OUT.

    IN is searched recursively (any file names, with or without extension). Slices are
    grouped by SeriesInstanceUID and ordered by position along the slice normal. Series
    already at the target are skipped; existing output series are skipped unless
    --overwrite, so an interrupted run resumes. The input is never modified.
    """
    from kernelconv.kernels import read_kernel_map
    from kernelconv.pipeline import ConvertOptions, run_convert, write_report

    rank, world, local_rank = _dist_env()
    if world > 1 and device == "auto":
        import torch

        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    options = ConvertOptions(
        target=target, source_override=source,
        kernel_map=read_kernel_map(kernel_map) if kernel_map else {}, batch_size=batch_size,
        overwrite=overwrite, dry_run=dry_run, series_number_offset=series_number_offset,
        keep_preview=preview is not None,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("slices"), TimeRemainingColumn())
    factory, domains = _engine_factory(method, model, device, precision, backend)
    with Progress(*columns, console=err, transient=False, disable=dry_run) as bar:
        report = run_convert(input_path, output_path, factory, domains, options,
                             progress=_RichProgress(bar), rank=rank, world_size=world)
    if not dry_run:
        if report_path is None:
            name = "kernelconv-report.json" if world == 1 else f"kernelconv-report.rank{rank}.json"
            report_path = output_path / name
        write_report(report, report_path)
    _print_summary(report, dry_run)
    if preview is not None:
        _write_previews(report, preview)
    sys.exit(EXIT_SERIES_FAILED if report.failed else EXIT_OK)


def _print_summary(report: Any, dry_run: bool) -> None:
    table = Table(title="kernelconv plan" if dry_run else "kernelconv summary",
                  show_lines=False)
    for col in ("series", "kernel", "target", "images", "status", "seconds", "note"):
        table.add_column(col, overflow="fold")
    style = {"converted": "green", "skipped": "yellow", "failed": "bold red", "planned": "cyan"}
    for r in report.results:
        note = r.reason or "; ".join(r.warnings)
        table.add_row(
            r.folder + (f" #{r.series_number}" if r.series_number is not None else ""),
            r.source_kernel or "?", r.target_kernel, str(r.images),
            f"[{style.get(r.status, '')}]{r.status}[/]", f"{r.seconds:.1f}", note,
        )
    out.print(table)
    if report.skipped:
        out.print(f"{len(report.skipped)} file(s) or series skipped (not CT images, DICOMDIR, "
                  "unreadable...): see the report")
    for r in report.results:
        if r.status == "failed":
            print(f"kernelconv: series failed: {r.folder}"
                  f": {r.reason}", file=sys.stderr)


def _write_previews(report: Any, path: Path) -> None:
    from kernelconv.preview import write_preview

    rows = [
        (f"{r.source_kernel} -> {r.target_kernel}", r.preview[0], r.preview[1])
        for r in report.results if r.preview is not None
    ][:8]
    if not rows:
        err.print("no series converted in this run: no preview written")
        return
    write_preview(rows, path)
    out.print(f"preview: {path}")


@cli.command(epilog="""
\b
Examples:
  kernelconv models
  KERNELCONV_MODELS=/data/models kernelconv models
""")
def models() -> None:
    """List installed models: bundled (models/) and user ($KERNELCONV_MODELS or
    ~/.local/share/kernelconv/models). The default is marked with *."""
    from kernelconv.bundled import bundled_models_dir, example_series_dir
    from kernelconv.modelfile import list_models, user_models_dir

    entries = list_models()
    table = Table(title="kernelconv models")
    for col in ("", "name", "origin", "kernels (labels)", "conv/res", "id hash / problem"):
        table.add_column(col, overflow="fold", no_wrap=col.startswith("kernels"))
    for e in entries:
        name = e.path.name.removesuffix(".safetensors")
        if e.info is None:
            table.add_row("", name, e.origin, "", "", f"[red]{e.error}[/]")
        else:
            a = e.info.arch_args
            arch = f"{a.get('conv_dim')}/{a.get('n_res')}"  # conv_dim / residual blocks
            table.add_row("*" if e.default else "", name, e.origin, ",".join(e.info.domains),
                          arch, "@" + e.info.weights_sha256[:12])
    out.print(table)
    out.print(f"user models: {user_models_dir()}")
    out.print(f"bundled models: {bundled_models_dir() or 'none'}")
    out.print(f"bundled example series: {example_series_dir() or 'none'}")
    if not entries:
        out.print("no models installed (the bundled default is missing from this installation): "
                  "train one (kernelconv train, kernelconv export) or copy a model file into "
                  "the user models folder")


SIMULATE_EPILOG = """
\b
Examples:
  kernelconv simulate sim/train --patients 8 --slices 32 --seed 1
  kernelconv simulate sim/test --patients 2 --slices 16 --seed 1001 --dose 0.5
  kernelconv simulate sim/qa --phantom qa --slices 16
  kernelconv simulate sim/x --kernels B30f,B70f,B45x --kernel-table my-kernels.json

\b
Writes OUT/patient-NNN/<kernel>/IMnnnn (one series per kernel, same study, slices paired
by position), OUT/patient-NNN/truth.npz (noiseless HU and lung mask) and
OUT/simulation.json. Finished patients are kept, so an interrupted run resumes.
"""


@cli.command(epilog=SIMULATE_EPILOG)
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--patients", type=click.IntRange(1, 100000), default=1, show_default=True)
@click.option("--slices", type=click.IntRange(1, 2000), default=16, show_default=True,
              help="Slices per patient (1 mm apart).")
@click.option("--kernels", default="B30f,B50f,B70f", show_default=True,
              help="Comma-separated kernels from the kernel table.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Anatomy and noise seed; patient i uses a seed derived from (seed, i).")
@click.option("--dose", type=click.FloatRange(0.01, 100.0), default=1.0, show_default=True,
              help="Relative dose (1.0: B30f soft-tissue noise about 15 HU).")
@click.option("--phantom", type=click.Choice(["chest", "qa"]), default="chest",
              show_default=True, help="Adult chest, or the QA phantom (water, rod) at 10x dose.")
@click.option("--kernel-table", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON list of extra kernel definitions (see docs/simulation.md).")
def simulate(output_path: Path, patients: int, slices: int, kernels: str, seed: int,
             dose: float, phantom: str, kernel_table: Path | None) -> None:
    """Simulate paired multi-kernel CT: the same anatomy and noise, one series per kernel.

    A physics-based simulator (an extension beyond the paper): a procedural chest phantom
    on a grid 2x finer than the output, parallel-beam projection with detector aperture and
    focal spot, Poisson and electronic noise (one realisation per slice shared by all
    kernels), and FBP with each kernel's window. See docs/simulation.md.
    """
    from kernelconv.sim.kernels import load_kernel_table
    from kernelconv.sim.series import SimulationConfig
    from kernelconv.sim.series import simulate as run_simulation

    table = load_kernel_table(kernel_table)
    names = tuple(k.strip() for k in kernels.split(",") if k.strip())
    unknown = [k for k in names if k not in table]
    if not names or unknown:
        raise UsageError(f"--kernels: unknown kernel(s) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(table)}")
    config = SimulationConfig(patients=patients, slices=slices, kernels=names, seed=seed,
                              dose=dose, phantom=phantom)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("slices"), TimeRemainingColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(f"simulating {patients} x {slices} slices", total=patients * slices)
        folders = run_simulation(output_path, config, table,
                                 on_slice=lambda n: bar.advance(task, n))
    out.print(f"wrote {len(folders)} {'QA phantom' if phantom == 'qa' else 'patient'} "
              f"folder(s) with kernels {', '.join(names)} under {output_path}")


@cli.command(epilog="""
\b
Examples:
  kernelconv simulate sim/qa --phantom qa --slices 16
  kernelconv qa sim/qa --plot docs/img/mtf.png --json qa.json
""")
@click.argument("series_dir", metavar="SERIES_DIR", type=click.Path(path_type=Path))
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the MTF curves as a PNG.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the measurements as JSON.")
@click.option("--kernel-table", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON kernel table with the specs of user kernels.")
def qa(series_dir: Path, plot: Path | None, json_path: Path | None,
       kernel_table: Path | None) -> None:
    """Measure MTF (circular edge: MTF50, MTF10, peak) and noise of QA-phantom series.

    Every CT series under SERIES_DIR is measured; noise is also given relative to B30f.
    Kernels with a specification are checked against it; the exit code is 1 if any target
    is missed.
    """
    from kernelconv.evaluation.qa import format_number, measure_qa, plot_mtf
    from kernelconv.sim.kernels import load_kernel_table

    table = load_kernel_table(kernel_table)
    results = measure_qa(series_dir)
    t = Table(title="kernelconv qa: measured vs spec")
    for col in ("kernel", "slices", "MTF50 lp/cm", "MTF10 lp/cm", "max MTF", "noise SD HU",
                "noise / B30f", "spec"):
        t.add_column(col)
    failed = False
    rows = []
    for r in results:
        checks = r.checks(table.get(r.kernel))
        failed |= not all(checks.values())
        verdict = ("[green]ok[/]" if checks and all(checks.values()) else
                   "[red]MISSES " + ", ".join(k for k, ok in checks.items() if not ok) + "[/]"
                   if checks else "no spec")
        t.add_row(r.kernel, str(r.slices), format_number(r.mtf.mtf50),
                  format_number(r.mtf.mtf10), f"{r.mtf.peak:.3f}", f"{r.noise_sd:.1f}",
                  format_number(r.noise_ratio) if r.noise_ratio is not None else "-", verdict)
        rows.append({"kernel": r.kernel, "folder": r.folder, "slices": r.slices,
                     "mtf50": r.mtf.mtf50, "mtf10": r.mtf.mtf10, "peak": r.mtf.peak,
                     "noise_sd": r.noise_sd, "noise_ratio": r.noise_ratio, "checks": checks})
    out.print(t)
    if plot:
        plot_mtf(results, plot, table)
        out.print(f"MTF plot: {plot}")
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    sys.exit(EXIT_SERIES_FAILED if failed else EXIT_OK)


@cli.command(epilog="""
\b
Examples:
  kernelconv convert sim/test/patient-000/B70f conv/ --to B30f --method filter
  kernelconv evaluate --pred conv/ --ref sim/test --truth sim/test --out eval/filter
  kernelconv evaluate --pred sim/test/patient-000/B70f --ref sim/test --truth sim/test \\
      --target B30f --label identity --out eval/identity

\b
Writes OUT/evaluation.md (a table laid out like the paper's Table 2, then every metric),
OUT/evaluation.json, OUT/nps.png and OUT/difference.png.
""")
@click.option("--pred", "pred_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of converted (predicted) series.")
@click.option("--ref", "ref_dir", required=True, type=click.Path(path_type=Path),
              help="Folder holding the reference series (same study, target kernel).")
@click.option("--truth", "truth_dir", type=click.Path(path_type=Path),
              help="Folder with the simulator's truth.npz files: regions, lung mask and noise "
                   "from the noiseless truth.")
@click.option("--target", metavar="KERNEL",
              help="Compare every --pred series with this reference kernel; needed for "
                   "unconverted series (the identity baseline).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("kernelconv-evaluation"), show_default=True)
@click.option("--label", default="", help="Method name for the report [default: from --pred].")
def evaluate(pred_dir: Path, ref_dir: Path, truth_dir: Path | None, target: str | None,
             out_dir: Path, label: str) -> None:
    """Compare converted series with reference series of the same anatomy (an extension
    beyond the paper, which reports PSNR/SSIM only).

    Slices are paired by position. Per direction: PSNR and SSIM on HU clipped to
    [-1024, 3071] with data range 4095 (the paper's setting), RMSE and MAE, mean-HU bias in
    soft tissue, fat, lung and bone, noise SD ratio and NPS peak frequency versus the
    reference, and the LAA-950 difference.
    """
    from kernelconv.evaluation.evaluate import evaluate as run_evaluation
    from kernelconv.evaluation.evaluate import write_reports

    for path in (pred_dir, ref_dir) + ((truth_dir,) if truth_dir else ()):
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
    results = run_evaluation(pred_dir, ref_dir, truth_dir, target)
    label = label or pred_dir.name
    paths = write_reports(results, out_dir, label)
    t = Table(title=f"kernelconv evaluate: {label} (PSNR/SSIM over 4095 HU, the paper's setting)")
    for col in ("direction", "slices", "PSNR dB", "SSIM", "RMSE HU", "noise ratio",
                "NPS peak pred/ref", "LAA-950 diff pp"):
        t.add_column(col)
    for r in results:
        d = r.summary()
        t.add_row(d["direction"], str(d["slices"]), f"{d['psnr_db']:.2f}", f"{d['ssim']:.4f}",
                  f"{d['rmse_hu']:.1f}", f"{d['noise_ratio']:.2f}",
                  f"{d['nps_peak_pred_lpcm']:.1f}/{d['nps_peak_ref_lpcm']:.1f}",
                  f"{d['laa950_diff_pp']:+.2f}")
    out.print(t)
    out.print(f"report: {paths['markdown']} (and evaluation.json, nps.png, difference.png)")


TRAIN_EPILOG = """
\b
Examples:
  kernelconv simulate sim/train --patients 16 --slices 32 --seed 1
  kernelconv train --data sim/train --out runs/ggcl                 # the paper's settings
  kernelconv train --data sim/train --out runs/cpu --crop 256 --iters 2000
  kernelconv train --data sim/train --out runs/ggcl --resume        # continue a run
  kernelconv train --data sim/train --out runs/ggcl --resume --max-minutes 9   # in pieces
  kernelconv train --data sim/train --out runs/ggdr --reg ggdr      # ablation
  torchrun --nproc-per-node 4 -m kernelconv train --data sim/train --out runs/ggcl
  kernelconv export runs/ggcl --name my-ggcl
  kernelconv train --data site/ --out runs/site --init sim-paired-v1   # fine-tune the default

\b
Settings not given as options come from --config FILE (JSON, the fields of TrainConfig in
kernelconv/training/loop.py) or the paper's defaults (docs/training.md).
"""


@cli.command(epilog=TRAIN_EPILOG)
@click.option("--data", "data_dirs", multiple=True, required=True,
              type=click.Path(path_type=Path), help="DICOM folder(s) of training series.")
@click.option("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/ggcl"), show_default=True,
              help="Run folder: cache, checkpoints, TensorBoard logs.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="JSON training config.")
@click.option("--iters", type=click.IntRange(1), help="Iterations [paper: 400000].")
@click.option("--batch-size", type=click.IntRange(1), help="Batch size [paper: 2].")
@click.option("--crop", type=click.IntRange(128), help="Random crop size, a multiple of 128 "
              "[paper: full slices]. Faster, but the generator's instance norm then sees other "
              "statistics than on the full slices it converts: finish on full slices "
              "(docs/training.md).")
@click.option("--reg", type=click.Choice(["ggcl", "ggdr", "none"]),
              help="Discriminator regulariser [paper: ggcl].")
@click.option("--paired", is_flag=True, default=None,
              help="Extension: add an L1 term to the real target slice (paired data only).")
@click.option("--kernels", help="Comma-separated training kernels, in label order "
              "[default: B30f,B50f,B70f].")
@click.option("--seed", type=int, help="Random seed [0].")
@click.option("--ckpt-every", type=click.IntRange(1), help="Checkpoint interval [1000].")
@click.option("--amp", type=click.Choice(["none", "bf16", "fp16"]),
              help="Mixed precision on CUDA [none].")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the nets.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--resume", is_flag=True, help="Continue from the run's latest checkpoint.")
@click.option("--init", "init_spec", metavar="MODEL|CKPT",
              help="Extension: start a new run from these weights, e.g. the bundled default "
                   "model to fine-tune it on your own data (a model name or file: generator "
                   "only, fresh discriminator; or a training checkpoint .pt: both). The "
                   "architecture and kernel order come from it.")
@click.option("--max-minutes", type=click.FloatRange(0.0, min_open=True),
              help="Checkpoint and stop after this many minutes (continue with --resume).")
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Held-out paired series (e.g. simulated patients of another seed): PSNR/SSIM "
                   "per direction at every checkpoint, in RUN/validation.jsonl and TensorBoard.")
def train(data_dirs: tuple[Path, ...], run_dir: Path, config_file: Path | None,
          iters: int | None, batch_size: int | None, crop: int | None, reg: str | None,
          paired: bool | None, kernels: str | None, seed: int | None, ckpt_every: int | None,
          amp: str | None, compile_: bool | None, device: str, resume: bool,
          init_spec: str | None, max_minutes: float | None, val_dir: Path | None) -> None:
    """Train the GGCL StarGAN (generator and U-Net discriminator) on DICOM series.

    Each series' kernel (ConvolutionKernel) is its domain. The series are decoded once into
    a cache in the run folder; batches are random (crops of) slices with their domain labels,
    unpaired as in the paper.
    """
    from kernelconv.training.loop import TrainConfig
    from kernelconv.training.loop import train as run_training

    file_settings = TrainConfig.read_file(config_file) if config_file else {}
    cfg = TrainConfig().updated(file_settings, str(config_file or "defaults"))
    overrides = {k: v for k, v in {
        "iters": iters, "batch_size": batch_size, "crop": crop, "reg": reg, "paired": paired,
        "seed": seed, "ckpt_every": ckpt_every, "amp": amp, "compile": compile_,
        "domains": [k.strip() for k in kernels.split(",")] if kernels else None,
    }.items() if v is not None}
    cfg = cfg.updated(overrides, "options")
    init_source = None
    if init_spec:
        from kernelconv.training.warmstart import adopt_settings, load_init

        init_source = load_init(init_spec)
        explicit = set(overrides) | set(file_settings)
        cfg = cfg.updated({**adopt_settings(cfg, init_source, explicit),
                           "init": init_source.label}, "--init")
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("it"),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
               TextColumn("{task.fields[losses]}"))
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("train", total=cfg.iters, rate="", losses="")
        start = [0.0, 0]

        def progress(done: int, total: int, stats: dict[str, float]) -> None:
            import time

            now = time.perf_counter()
            if not start[0]:
                start[0], start[1] = now, done
            rate = (done - start[1]) / max(now - start[0], 1e-9)
            losses = " ".join(f"{k}={v:.3f}" for k, v in stats.items() if k.endswith("loss"))
            bar.update(task, completed=done, rate=f"{rate:.2f} it/s", losses=losses)

        result = run_training(cfg, list(data_dirs), run_dir, device, resume, progress, val_dir,
                              max_minutes * 60.0 if max_minutes else None, init_source)
    out.print(f"trained to iteration {result.iterations} in {result.seconds:.0f} s; "
              f"checkpoint {result.checkpoint}")
    summary = {"iterations": result.iterations, "seconds": result.seconds,
               "checkpoint": str(result.checkpoint), "g_checksum": result.g_checksum}
    rank = os.environ.get("RANK", "0")
    (run_dir / f"train-summary.rank{rank}.json").write_text(
        json.dumps(summary, indent=2) + "\n")


@cli.command(epilog="""
\b
Examples:
  kernelconv export runs/ggcl --name my-ggcl                 # into the user models folder
  kernelconv export runs/ggcl/checkpoints/ckpt-00400000.pt --name ggcl-400k --half
  kernelconv export runs/ggcl --name default-ggcl --models-dir models
  kernelconv export runs/ggcl --name my-ggcl --onnx          # model file and NAME.onnx
  kernelconv export my-ggcl --onnx --models-dir deploy/      # ONNX of an installed model
""")
@click.argument("source", metavar="RUN_DIR|CKPT|MODEL", type=click.Path(path_type=Path))
@click.option("--name", help="Model name (file NAME.safetensors); required from a run.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write [default: the user models folder].")
@click.option("--half", is_flag=True, help="Store fp16 weights (half the size).")
@click.option("--onnx", "as_onnx", is_flag=True,
              help="Also write NAME.onnx (opset 18, fp32, dynamic batch/height/width, kernelconv "
                   "metadata) for ONNX Runtime (needs kernelconv[onnx]).")
def export(source: Path, name: str | None, models_dir: Path | None, half: bool,
           as_onnx: bool) -> None:
    """Write the inference model file (generator and metadata only) from a training run, or
    (with --onnx) the ONNX graph of a run's or an installed model."""
    from kernelconv.dicom.paths import sanitise
    from kernelconv.modelfile import SUFFIX, resolve_model, user_models_dir

    if name is not None and sanitise(name) != name:
        raise UsageError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    is_run = source.is_dir() or source.suffix == ".pt"
    if is_run:
        from kernelconv.training.export import export_model

        if name is None:
            raise UsageError("export: --name is required when exporting a training run")
        path = export_model(source, name, models_dir, half)
        out.print(f"model written: {path}")
    else:
        if not as_onnx:
            raise UsageError(f"{source}: not a run folder or checkpoint (*.pt); from an "
                             "installed model only --onnx can be exported")
        path = resolve_model(str(source))
        name = name or path.name[: -len(SUFFIX)]
    if as_onnx:
        from kernelconv.engines.onnx_engine import ONNX_SUFFIX, export_onnx

        target = (models_dir or (path.parent if is_run else user_models_dir())) \
            / f"{name}{ONNX_SUFFIX}"
        export_onnx(path, target)
        out.print(f"ONNX model written: {target}")


LISTEN_EPILOG = """
\b
Examples:
  kernelconv listen --to B30f --out converted/ --port 11112
  kernelconv listen --to B30f --forward PACS@10.0.0.5:104 --allow-ae PACS,CT1 --stable-seconds 30
  kernelconv listen --config listen.json
  kernelconv echo KERNELCONV@localhost:11112

\b
Every received instance is fsync'd into the spool before it is acknowledged; a series is
converted once nothing new of it has arrived for --stable-seconds; it leaves the spool only
when written to --out and accepted by every --forward destination. See docs/pacs.md.
"""

_LISTEN_KEYS = {"ae_title", "host", "port", "to", "out", "forward", "allow_ae",
                "stable_seconds", "spool", "tls_cert", "tls_key", "tls_ca", "method", "model",
                "device", "precision", "backend", "batch_size", "kernel_map", "source", "unconvertible",
                "retries"}


@cli.command(epilog=LISTEN_EPILOG)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="JSON file with any of these options (underscored names).")
@click.option("--ae-title", default=None, help="Our AE title [KERNELCONV].")
@click.option("--host", default=None, help="Address to listen on [0.0.0.0].")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="[11112]")
@click.option("--to", "target", default=None, metavar="KERNEL", help="Target kernel.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write converted series here.")
@click.option("--forward", multiple=True, metavar="AET@HOST:PORT",
              help="Send converted series here (repeatable).")
@click.option("--allow-ae", default=None, help="Comma-separated calling AE titles to accept.")
@click.option("--stable-seconds", type=click.FloatRange(0.1), default=None,
              help="Quiet period that completes a series [30].")
@click.option("--spool", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Spool folder [./kernelconv-spool].")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Require client certificates signed by this CA.")
@click.option("--method", type=click.Choice(["model", "filter"]), default=None)
@click.option("--model", default=None, metavar="NAME|PATH")
@click.option("--device", default=None, help="[auto]")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None)
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default=None, help="[torch]")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=None)
@click.option("--kernel-map", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None)
@click.option("--from", "source", default=None, metavar="KERNEL")
@click.option("--unconvertible", type=click.Choice(["ignore", "forward"]), default=None,
              help="What to do with series that cannot be converted [ignore].")
@click.option("--retries", type=click.IntRange(1, 100), default=None,
              help="Forwarding attempts per destination [5].")
def listen(config_file: Path | None, **opts: Any) -> None:
    """Receive series over DICOM (C-STORE), convert them, store and/or forward the results."""
    import signal

    from kernelconv.kernels import read_kernel_map
    from kernelconv.pacs.forward import Destination
    from kernelconv.pacs.server import ListenConfig, Listener, configure_logging

    settings: dict[str, Any] = {}
    if config_file:
        try:
            settings = json.loads(config_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UsageError(f"{config_file}: invalid JSON ({exc})") from None
        unknown = set(settings) - _LISTEN_KEYS
        if unknown:
            raise UsageError(f"{config_file}: unknown setting(s) {', '.join(sorted(unknown))}")
    opts["to"] = opts.pop("target")
    for key, value in opts.items():
        if value is not None and value != ():
            settings[key] = list(value) if isinstance(value, tuple) else value
    if not settings.get("to"):
        raise UsageError("listen: --to KERNEL is required")
    allow = settings.get("allow_ae") or []
    if isinstance(allow, str):
        allow = [a.strip() for a in allow.split(",") if a.strip()]
    method = settings.get("method", "model")
    factory, domains = _engine_factory(method, settings.get("model"),
                                       settings.get("device", "auto"),
                                       settings.get("precision", "fp32"),
                                       settings.get("backend"))
    kmap = settings.get("kernel_map")
    cfg = ListenConfig(
        target=settings["to"], spool=Path(settings.get("spool", "kernelconv-spool")),
        ae_title=settings.get("ae_title", "KERNELCONV"), host=settings.get("host", "0.0.0.0"),
        port=int(settings.get("port", 11112)),
        out=Path(settings["out"]) if settings.get("out") else None,
        forward=[Destination.parse(d) for d in settings.get("forward", [])],
        allow_ae=allow, stable_seconds=float(settings.get("stable_seconds", 30.0)),
        unconvertible=settings.get("unconvertible", "ignore"),
        kernel_map=read_kernel_map(Path(kmap)) if kmap else {},
        source_override=settings.get("source"), batch_size=int(settings.get("batch_size", 4)),
        retries=int(settings.get("retries", 5)),
        tls_cert=Path(settings["tls_cert"]) if settings.get("tls_cert") else None,
        tls_key=Path(settings["tls_key"]) if settings.get("tls_key") else None,
        tls_ca=Path(settings["tls_ca"]) if settings.get("tls_ca") else None,
    )
    configure_logging()
    listener = Listener(cfg, factory, domains)
    try:
        listener.start()
    except OSError as exc:
        raise UsageError(f"listen: cannot listen on {cfg.host}:{cfg.port} ({exc.strerror})") \
            from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: listener.shutdown())
    listener.run_forever()


def _engine_factory(method: str, model: str | None, device: str, precision: str,
                    backend: str | None = None) -> tuple[Callable[[], Any], tuple[str, ...]]:
    if method == "filter":
        from kernelconv.engines.filter_engine import FilterEngine

        engine = FilterEngine()
        return (lambda: engine), engine.domains
    from kernelconv.modelfile import read_info, resolve_model

    path = resolve_model(model)
    if path.suffix == ".onnx" or backend == "onnx":
        if backend == "torch":
            raise UsageError(f"{path}: an ONNX model runs with --backend onnx, not torch")
        from kernelconv.engines.onnx_engine import OnnxEngine, onnx_file_for, read_onnx_info

        if path.suffix == ".onnx":
            info = read_onnx_info(path)
        else:
            info = read_info(path)
            err.print(f"ONNX graph of {info.model_id}: exporting once if not cached...")
        onnx_path = onnx_file_for(path)  # export errors surface before any series is read
        return (lambda: OnnxEngine(onnx_path, device, precision)), tuple(info.domains)
    from kernelconv.engines.torch_engine import TorchEngine

    return (lambda: TorchEngine(path, device, precision)), tuple(read_info(path).domains)


@cli.command(epilog="""
\b
Examples:
  kernelconv status --spool /var/spool/kernelconv
""")
@click.option("--spool", type=click.Path(file_okay=False, path_type=Path),
              default=Path("kernelconv-spool"), show_default=True)
def status(spool: Path) -> None:
    """Show a listener's pending, delivered, skipped and failed series (from SPOOL/status.json)."""
    import datetime

    path = spool / "status.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError(f"{path}: no listener status here (is --spool right?)") from None
    counts = ", ".join(f"{k} {v}" for k, v in sorted(data.get("counts", {}).items())) or "none"
    out.print(f"series: {counts}")
    t = Table(title=f"kernelconv listener: {spool}")
    for col in ("updated", "SeriesInstanceUID", "status", "instances", "reason"):
        t.add_column(col, overflow="fold")
    for r in data.get("series", [])[:50]:
        when = datetime.datetime.fromtimestamp(r["updated"]).strftime("%Y-%m-%d %H:%M:%S")
        t.add_row(when, r["series_uid"], r["status"], str(r["instances"]), r.get("reason", ""))
    out.print(t)


@cli.command(epilog="""
\b
Examples:
  kernelconv echo KERNELCONV@localhost:11112
  kernelconv echo PACS@10.0.0.5:104 --ae-title KERNELCONV
""")
@click.argument("destination", metavar="AET@HOST:PORT")
@click.option("--ae-title", default="KERNELCONV", show_default=True, help="Our AE title.")
def echo(destination: str, ae_title: str) -> None:
    """Test DICOM connectivity with C-ECHO."""
    from kernelconv.pacs.forward import Destination
    from kernelconv.pacs.forward import echo as c_echo

    dest = Destination.parse(destination)
    seconds = c_echo(dest, ae_title)
    out.print(f"C-ECHO {dest.label}: success in {seconds * 1000:.0f} ms")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one line and an exit code."""
    import logging
    import warnings

    # pydicom warns about every non-conformant value in a source file; the conversion reports
    # what matters per series, so keep the terminal to one line per problem
    warnings.filterwarnings("ignore", module=r"pydicom\..*")
    warnings.filterwarnings("ignore", category=UserWarning, message=r"(Invalid value|The value length)")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    try:
        code = cli.main(args=argv, prog_name="kernelconv", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KernelconvError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - last resort: no traceback for users
        _fail(f"internal error ({type(exc).__name__}: {exc}); please report it", EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
