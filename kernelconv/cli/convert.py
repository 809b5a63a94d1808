"""`kernelconv convert` and `kernelconv models`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress

from kernelconv.cli.app import cli
from kernelconv.cli.options import dist_env, engine_options, engine_spec
from kernelconv.cli.render import RichProgress, err, new_table, out, progress_columns, short_path
from kernelconv.errors import EXIT_OK, EXIT_SERIES_FAILED

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
@engine_options
@click.option("--series-number-offset", type=click.IntRange(0, 1_000_000), default=None,
              help="Derived SeriesNumber = source SeriesNumber + this [default: 1000].")
@click.option("--overwrite", is_flag=True, help="Redo series whose output already exists.")
@click.option("--include-derived", is_flag=True,
              help="Also convert series that kernelconv itself derived (skipped by default: "
                   "converting a converted series compounds the estimate).")
@click.option("--dry-run", is_flag=True, help="List what would be done; write nothing.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report path [default: OUT/kernelconv-report.json].")
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Write a PNG montage (source, converted, difference) of a middle slice "
                   "per converted series, lung window WL -700 / WW 1500.")
def convert(input_path: Path, output_path: Path, target: str, series_number_offset: int | None,
            overwrite: bool, include_derived: bool, dry_run: bool, report_path: Path | None,
            preview: Path | None, **shared: Any) -> None:
    """Convert every CT series under IN to kernel --to, writing derived series under OUT.

    IN is searched recursively (any file names, with or without extension). Slices are
    grouped by SeriesInstanceUID and ordered by position along the slice normal. Series
    already at the target, and series kernelconv derived, are skipped; existing output
    series are skipped unless --overwrite, so an interrupted run resumes. The input is never
    modified.
    """
    from kernelconv.engines.select import select_engine
    from kernelconv.kernels import read_kernel_map
    from kernelconv.pipeline import ConvertOptions, default_report_path, run_convert

    rank, world, local_rank = dist_env()
    spec = engine_spec(shared)
    if world > 1 and spec.device == "auto":
        import torch

        spec = engine_spec({"device": f"cuda:{local_rank}" if torch.cuda.is_available()
                            else "cpu"}, spec)
    defaults = ConvertOptions(target=target)
    options = ConvertOptions(
        target=target, source_override=shared.get("source"),
        kernel_map=read_kernel_map(shared["kernel_map"]) if shared.get("kernel_map") else {},
        batch_size=shared.get("batch_size") or defaults.batch_size, overwrite=overwrite,
        dry_run=dry_run, include_derived=include_derived,
        max_bias=defaults.max_bias if shared.get("max_bias") is None else shared["max_bias"],
        series_number_offset=defaults.series_number_offset if series_number_offset is None
        else series_number_offset,
        keep_preview=preview is not None,
    )
    selected = select_engine(spec, notice=err.print)
    with Progress(*progress_columns("slices"), console=err, transient=False,
                  disable=dry_run) as bar:
        report = run_convert(input_path, output_path, selected.factory, selected.domains,
                             options, progress=RichProgress(bar), rank=rank, world_size=world,
                             owner=selected.owner,
                             report_path=report_path or default_report_path(output_path, rank,
                                                                            world))
    print_summary(report, dry_run, input_path)
    if preview is not None:
        _write_previews(report, preview)
    sys.exit(EXIT_SERIES_FAILED if report.failed else EXIT_OK)


def print_summary(report: Any, dry_run: bool, root: Path | None = None) -> None:
    """The run's table (series relative to the input folder) and one stderr line per failure."""
    table = new_table("kernelconv plan" if dry_run else "kernelconv summary",
                      ("series", "kernel", "to", "images", "status", "s", "note"),
                      wrap=("series", "note"), widths={"status": 9, "s": 4})
    style = {"converted": "green", "skipped": "yellow", "failed": "bold red", "planned": "cyan"}
    for r in report.results:
        note = r.reason or "; ".join(r.warnings)
        if r.status == "converted" and r.hu_check:
            note = "; ".join(filter(None, [_check_note(r.hu_check), note]))
        table.add_row(
            short_path(r.folder, root) + (f" #{r.series_number}"
                                          if r.series_number is not None else ""),
            r.source_kernel or "?", r.target_kernel, str(r.images),
            f"[{style.get(r.status, '')}]{r.status}[/]", f"{r.seconds:.1f}", note,
        )
    out.print(table)
    if report.skipped:
        out.print(f"{len(report.skipped)} file(s) or series skipped (not CT images, DICOMDIR, "
                  "unreadable...): see the report")
    for r in report.results:
        if r.status == "failed":
            print(f"kernelconv: series failed: {r.folder}: {r.reason}", file=sys.stderr)


def _check_note(check: dict[str, Any]) -> str:
    """The HU check in a few words: the largest checked bias and the noise ratio."""
    biases = {k: v for k, v in check["bias_hu"].items() if k != "air" and v is not None}
    parts = []
    if biases:
        region, value = max(biases.items(), key=lambda kv: abs(kv[1]))
        parts.append(f"bias {value:+.1f} HU {region}")
    if check.get("noise_ratio") is not None:
        expected = check.get("expected_noise_ratio")
        parts.append(f"noise x{check['noise_ratio']:.2f}"
                     + (f" (exp. {expected:.2f})" if expected is not None else ""))
    return ", ".join(parts)


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
    table = new_table("kernelconv models", ("", "name", "origin", "kernels (labels)",
                                            "conv/res", "id hash / problem"),
                      wrap=("id hash / problem",))
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
