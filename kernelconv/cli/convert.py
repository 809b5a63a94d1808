"""`kernelconv convert` and `kernelconv models`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress

from kernelconv.cli.app import cli
from kernelconv.cli.options import dist_env, engine_options, engine_spec
from kernelconv.cli.render import (
    RichProgress,
    err,
    new_table,
    out,
    progress_columns,
    short_path,
    unique_labels,
)
from kernelconv.errors import EXIT_OK, EXIT_SERIES_FAILED
from kernelconv.fileio import output_errors, probe_output
from kernelconv.pipeline import ConvertOptions

CONVERT_EPILOG = """
\b
Examples:
  kernelconv convert in/ out/ --to B30f
  kernelconv convert in/ out/ --to B70f --from B30f --model my-model
  kernelconv convert in/ out/ --to B30f --method filter
  kernelconv convert in/ out/ --to B30f --kernel-map site.txt --preview a.png
  kernelconv convert in/ out/ --to B30f --device cuda --precision bf16 \\
      --batch-size 16
  torchrun --nproc-per-node 4 -m kernelconv convert archive/ out/ --to B30f

\b
Output: OUT/<StudyInstanceUID>/<target>_<source SeriesInstanceUID>/<file>,
plus OUT/kernelconv-report.json.
Exit codes: 0 all converted or skipped, 1 a series failed, 2 usage, 3 model,
4 input, 5 output, 70 internal error (docs/usage.md).
"""


@cli.command(epilog=CONVERT_EPILOG)
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--to", "target", required=True, metavar="KERNEL",
              help="Target kernel, one of the model's kernels (e.g. B30f).")
@engine_options
@click.option("--series-number-offset", type=click.IntRange(0, 1_000_000),
              default=ConvertOptions.series_number_offset,
              help="Derived SeriesNumber = source SeriesNumber + this.")
@click.option("--overwrite", is_flag=True, help="Redo series whose output already exists.")
@click.option("--include-derived", is_flag=True,
              help="Also convert series that kernelconv itself derived (skipped by default: "
                   "converting a converted series compounds the estimate).")
@click.option("--dry-run", is_flag=True,
              help="List what would be done (series, model or filter, output folders); write "
                   "nothing.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.json", show_default="OUT/kernelconv-report.json",
              help="Where to write the JSON run report (under torchrun, one per rank: "
                   "FILE.rankN.json).")
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Write a PNG of the middle slice per converted series (up to 8): source, "
                   "converted and difference, and zooms of a lung and a soft-tissue region "
                   "at full resolution. Under torchrun, one per rank: FILE.rankN.png.")
def convert(input_path: Path, output_path: Path, target: str, series_number_offset: int,
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
    from kernelconv.pipeline import default_report_path, run_convert

    rank, world, local_rank = dist_env()
    spec = engine_spec(shared)
    if world > 1 and spec.device == "auto":
        import torch

        spec = engine_spec({"device": f"cuda:{local_rank}" if torch.cuda.is_available()
                            else "cpu"}, spec)
    options = ConvertOptions(
        target=target, source_override=shared.get("source"),
        kernel_map=read_kernel_map(shared["kernel_map"]) if shared.get("kernel_map") else {},
        batch_size=shared["batch_size"], overwrite=overwrite, dry_run=dry_run,
        include_derived=include_derived, max_bias=shared["max_bias"],
        kernel_check=shared["kernel_check"],
        series_number_offset=series_number_offset, keep_preview=preview is not None,
    )
    selected = select_engine(spec, notice=err.print)
    report_path = rank_path(report_path, rank, world) if report_path \
        else default_report_path(output_path, rank, world)
    preview = rank_path(preview, rank, world) if preview else None
    # an unusable output fails now, not after the conversion (OUT = IN is refused by the
    # pipeline without writing into the input, even a probe)
    if not dry_run and output_path.resolve() != input_path.resolve():
        probe_output(output_path, "OUT", folder=True)
        probe_output(report_path, "--report", folder=False)
        if preview is not None:
            probe_output(preview, "--preview", folder=False)
    with Progress(*progress_columns("slices"), console=err, transient=False,
                  disable=dry_run) as bar:
        report = run_convert(input_path, output_path, selected.factory, selected.domains,
                             options, progress=RichProgress(bar), rank=rank, world_size=world,
                             owner=selected.owner, report_path=report_path,
                             plan_method=selected.planned_route)
    if dry_run:
        engine = selected.owner + (f" ({selected.path})" if selected.path else "")
        if spec.method == "model":
            engine += f", device {spec.device}, precision {spec.precision}"
        out.print(f"would convert with {engine} into {output_path}")
    print_summary(report, dry_run, input_path)
    if preview is not None:
        _write_previews(report, preview, input_path)
    sys.exit(EXIT_SERIES_FAILED if report.failed else EXIT_OK)


def rank_path(path: Path, rank: int, world: int) -> Path:
    """A file one rank of a torchrun writes: ``report.json`` -> ``report.rank1.json`` when
    there are several ranks (each rank reports its own share), unchanged otherwise."""
    return path if world <= 1 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def print_summary(report: Any, dry_run: bool, root: Path | None = None) -> None:
    """The run's table (series relative to the input folder), the output folder of each series
    on a dry run, and one stderr line per failure."""
    table = new_table("kernelconv plan" if dry_run else "kernelconv summary",
                      ("series", "kernel", "to", "images", "status", "s", "note"),
                      wrap=("series", "note"), widths={"status": 9, "s": 4})
    style = {"converted": "green", "skipped": "yellow", "failed": "bold red", "planned": "cyan"}
    labels = series_labels(report.results, root)
    for r, label in zip(report.results, labels, strict=True):
        note = r.reason or "; ".join(r.warnings)
        if r.status == "converted" and r.hu_check:
            note = "; ".join(filter(None, [_check_note(r.hu_check), note]))
        method: str = getattr(r, "method", None) or ""  # a series' own method, if any
        if r.status in ("converted", "planned") and method:
            note = "; ".join(filter(None, [_method_note(method), note]))
        table.add_row(label, r.source_kernel or "?", r.target_kernel, str(r.images),
                      f"[{style.get(r.status, '')}]{r.status}[/]", f"{r.seconds:.1f}", note)
    out.print(table)
    if dry_run:
        for r, label in zip(report.results, labels, strict=True):
            if r.status == "planned" and r.output:
                out.print(f"{label} -> {r.output}", soft_wrap=True)
    if report.skipped:
        out.print(f"{len(report.skipped)} file(s) or series skipped (not CT images, DICOMDIR, "
                  "unreadable...): see the report")
    for r in report.results:
        if r.status == "failed":
            print(f"kernelconv: series failed: {r.folder}: {r.reason}", file=sys.stderr)


def series_labels(results: Sequence[Any], root: Path | None = None) -> list[str]:
    """A short label per series, "folder #SeriesNumber" (the folder relative to ``root``),
    unique within the run: series that would read the same get the end of their
    SeriesInstanceUID."""
    labels = [short_path(r.folder, root) + (f" #{r.series_number}"
                                            if r.series_number is not None else "")
              for r in results]
    return unique_labels(labels, [r.series_uid for r in results])


def _method_note(method: str) -> str:
    """A series converted otherwise than the run's method (a model running its filter in
    this direction), in a few words."""
    if "has no" in method and "label" in method:
        return "the model's filter (no network label for the target)"
    if "runs the filter" in method:
        return "the model's filter (measured better here)"
    return "converted by: " + method[:60]


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


def _write_previews(report: Any, path: Path, root: Path | None) -> None:
    from kernelconv.preview import PreviewRow, write_preview

    rows = [PreviewRow(label, r.source_kernel or "?", r.target_kernel, *r.preview)
            for r, label in zip(report.results, series_labels(report.results, root),
                                strict=True)
            if r.preview is not None][:8]
    if not rows:
        err.print("no series converted in this run: no preview written")
        return
    with output_errors(path, "--preview"):
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
    from kernelconv.engines import model_kernels
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
    for e in entries:  # one line each: what the model is
        if e.info is not None:
            out.print(f"{e.path.name.removesuffix('.safetensors')}: "
                      f"{model_description(e.path, e.info.provenance)}", markup=False)
            routed = sorted(k for k, v in e.info.direction_use.items() if v == "filter")
            if routed:
                out.print(f"  runs the noise-limited filter, not its network, for "
                          f"{', '.join(routed)} (measured: the network did not beat it there)",
                          markup=False)
            more = len(model_kernels(e.info)) - len(e.info.domains)
            if more:
                out.print(f"  and {more} more kernels of its kernel table (vendor kernels): as "
                          "sources, and as targets through the filter (no network label)",
                          markup=False)
    out.print(f"user models: {user_models_dir()}")
    out.print(f"bundled models: {bundled_models_dir() or 'none'}")
    out.print(f"bundled example series: {example_series_dir() or 'none'}")
    if not entries:
        out.print("no models installed (the bundled default is missing from this installation): "
                  "train one (kernelconv train, kernelconv export) or copy a model file into "
                  "the user models folder")


def model_description(path: Path, provenance: dict[str, Any], limit: int = 170) -> str:
    """What a model is, in a sentence of at most ``limit`` characters: its provenance's
    "description", else the first sentence of its model card (NAME.md beside the file, the
    paragraph after the title, without markdown and asides in parentheses), else how it was
    trained (provenance "method")."""
    import re

    text = str(provenance.get("description") or "")
    card = path.with_name(path.name.removesuffix(".safetensors") + ".md")
    try:
        paragraphs = [] if text else card.read_text(encoding="utf-8").split("\n\n")
    except OSError:
        paragraphs = []
    for paragraph in paragraphs:
        para = paragraph.strip()
        if para and not para.startswith(("#", "|", "```", "!")):
            para = re.sub(r"^\*\*[^*]+:\*\*\s*", "", para)  # "**What it is:** "
            para = re.sub(r"\s*\([^()]*\)", "", para.replace("**", "").replace("`", ""))
            text = re.split(r"(?<=[A-Za-z0-9])\.\s+(?=[A-Z])", para, maxsplit=1)[0]
            text = text.rstrip(".") + "."
            break
    text = " ".join((text or str(provenance.get("method", "no description"))).split())
    if len(text) <= limit:
        return text
    head = text[:limit]  # too long: up to its last clause, or its last word
    cut = max(head.rfind(": "), head.rfind("; "))
    return head[:cut] + "." if cut >= 40 else head.rsplit(" ", 1)[0] + "..."
