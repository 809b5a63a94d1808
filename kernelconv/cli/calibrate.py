"""`kernelconv calibrate`: a site's kernel table from paired reconstructions of its scans."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click
from rich.progress import Progress

from kernelconv.cli.app import cli
from kernelconv.cli.options import renamed
from kernelconv.cli.render import err, new_table, out, progress_columns, short_path
from kernelconv.fileio import output_errors, probe_output, write_output_text

CALIBRATE_EPILOG = """
\b
Examples:
  kernelconv calibrate PAIRS/ --out-table site.json --plot site.png
  kernelconv calibrate --pair scan1/FC51 scan1/FC13 \\
      --pair scan2/FC51 scan2/FC13 --out-table site.json
  kernelconv calibrate --qa qa-scans/ --out-table site.json
  kernelconv convert archive/ out/ --to FC13 --method filter \\
      --kernel-table site.json

PAIRS/ holds, for a few scans, the same raw data reconstructed with two or more
kernels. Pairs are found by study and frame of reference, or, where
anonymisation changed those UIDs, by acquisition date/time, scanner and kVp;
both need the same geometry and common slice positions. --pair names a pair of
one-series folders explicitly. docs/calibration.md says how many slices a fit
needs and how well it converts.
"""


@cli.command(epilog=CALIBRATE_EPILOG)
@click.argument("pairs_dirs", metavar="[PAIRS]...", nargs=-1,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pair", "explicit", nargs=2, multiple=True, metavar="SRC_DIR REF_DIR",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Two folders of one series each: the same scan with two kernels.")
@click.option("--qa", "qa_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Instead of pairs: QA-phantom scans, one series per kernel (the phantom "
                   "`kernelconv qa` measures); transfers from their MTF ratios.")
@click.option("--unpaired", "archive", type=click.Path(exists=True, file_okay=False,
                                                       path_type=Path),
              metavar="ARCHIVE",
              help="Instead of pairs: an archive of single-kernel series (different "
                   "patients); each kernel's response is estimated from its series' noise "
                   "(extension).")
@click.option("--out-table", "out_path", required=True, metavar="FILE.json",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The kernel table to write (JSON, its folder created; read by "
                   "convert's --kernel-table).")
@renamed("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Draw the fitted transfers, MTFs and noise spectra.")
def calibrate(pairs_dirs: tuple[Path, ...], explicit: tuple[tuple[Path, Path], ...],
              qa_dir: Path | None, archive: Path | None, out_path: Path,
              plot: Path | None) -> None:
    """Fit the kernel conversion to a site's scanner from paired reconstructions.

    For each pair of kernels, fits the transfer between them in lp/cm (least squares on
    whole slices, any pixel spacing, its low frequencies held to the true target's local mean
    HU), measures both kernels' noise and noise power spectrum, and writes a kernel table: windows (anchored on the softest kernel),
    the fitted transfers, noise ratios and the figures (MTF50, MTF10). An extension beyond
    the paper.
    """
    from kernelconv.calibration import calibrate as run_calibration
    from kernelconv.calibration import collect_pairs
    from kernelconv.calibration.report import plot_calibration
    from kernelconv.errors import UsageError

    probe_output(out_path, "--out-table", folder=False)
    if plot:
        probe_output(plot, "--plot", folder=False)
    if archive is not None:
        if pairs_dirs or explicit or qa_dir is not None:
            raise UsageError("calibrate: --unpaired replaces PAIRS, --pair and --qa; give one")
        if plot:
            raise UsageError("calibrate: --plot draws a paired calibration's fits; "
                             "--unpaired has none")
        _unpaired(archive, out_path)
        return
    if qa_dir is not None:
        if pairs_dirs or explicit:
            raise UsageError("calibrate: --qa replaces PAIRS and --pair; give one or the other")
        from kernelconv.calibration.table import qa_calibration
        from kernelconv.evaluation.qa import measure_qa

        results = measure_qa(qa_dir)
        cal = qa_calibration(results)
        notes = [f"{r.kernel}: {r.slices} QA slice(s)" + ("" if r.stable else
                 " (too few for a stable MTF; see `kernelconv qa`)") for r in results]
    else:
        if not pairs_dirs and not explicit:
            raise UsageError("calibrate: give a PAIRS folder, at least one --pair SRC_DIR "
                             "REF_DIR, --qa QA_DIR or --unpaired ARCHIVE")
        pairs, notes = collect_pairs(list(pairs_dirs), list(explicit))
        # resolved: a relative and an absolute folder (--pair a/ /abs/b/) share a root too
        folders = [Path(f).resolve() for p in pairs
                   for f in (p.source.folder, p.reference.folder)]
        root = Path(os.path.commonpath(folders)) if folders else None
        t = new_table("kernelconv calibrate: pairs",
                      ("kernels", "slices", "pixel mm", "matched by", "folders"),
                      wrap=("matched by", "folders"))
        for p in pairs:  # one folder per line, relative to what they share
            t.add_row(" <-> ".join(p.kernels), str(len(p.slices)), f"{p.pixel_mm:.3f}",
                      p.matched_by, f"{short_path(p.source.folder, root)}\n"
                      f"{short_path(p.reference.folder, root)}")
        out.print(t)
        if root is not None:  # not in the title: rich wraps a title to the table's width
            out.print(f"folders under {root}", markup=False, soft_wrap=True)
        total = sum(len(p.slices) for p in pairs)
        with Progress(*progress_columns("slices"), console=err, transient=True) as prog:
            task = prog.add_task("fitting", total=total)
            cal = run_calibration(pairs, progress=lambda: prog.advance(task))
    command = "kernelconv calibrate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    write_output_text(out_path, json.dumps(cal.to_json(command), indent=1) + "\n",
                      "--out-table")
    t = new_table(f"kernel figures (reference scanner, anchored on {cal.anchor})",
                  ("kernel", "MTF50 lp/cm", "MTF10 lp/cm", "MTF peak", "noise ratio"))
    extrapolated = False
    for r in cal.figures():
        mark = "*" if r["mtf10_extrapolated"] else ""
        extrapolated |= bool(mark)
        t.add_row(r["kernel"], f"{r['mtf50_lpcm']:.2f}", f"{r['mtf10_lpcm']:.2f}{mark}",
                  f"{r['peak']:.2f}", "-" if r["noise_ratio"] is None else
                  f"{r['noise_ratio']:.2f}")
    out.print(t)
    if extrapolated:
        out.print("* beyond the fitted range (the images' Nyquist frequency): the window is "
                  "held there, so this figure is an extrapolation")
    out.print(f"anchor window: {cal.anchor_basis}")
    for (s, tgt), fit in sorted(cal.fits.items()):
        pts = fit.points()
        held = ", ".join(f"{r} {v.get('truth', 0.0):+.1f}" for r, v in fit.region_shift.items())
        basis = (f"local mean HU held to the true target's: {held}" if held else
                 "QA-phantom MTFs" if not fit.tiles else "no HU-check region")
        out.print(f"{s} -> {tgt}: {fit.method}, to {pts[-1][0]:.2f} lp/cm ({basis}); "
                  f"H(0, 2, 4, 6 lp/cm) = {fit(0.0):.4f}, {fit(2.0):.3f}, {fit(4.0):.3f}, "
                  f"{fit(6.0):.3f}")
        if fit.tiles and "soft tissue" not in fit.region_shift:
            err.print(f"[yellow]warning[/]: {s} <-> {tgt}: the calibration slices hold no soft "
                      "tissue the HU check measures, so the fit's low frequencies are not held "
                      "to it; add slices with soft tissue (docs/calibration.md)")
    for note in notes:
        err.print(f"note: {note}")
    if plot:
        with output_errors(plot, "--plot"):
            plot_calibration(cal, plot)
        out.print(f"plot: {plot}")
    out.print(f"kernel table: {out_path} (use: --method filter --kernel-table {out_path})")


def _unpaired(archive: Path, out_path: Path) -> None:
    """`calibrate --unpaired`: fingerprint every series, pool per kernel, write the table."""
    from kernelconv.calibration.unpaired import calibrate_unpaired

    with Progress(*progress_columns("series"), console=err, transient=True) as prog:
        task = prog.add_task("fingerprinting", total=None)
        cal = calibrate_unpaired(archive, progress=lambda folder: prog.advance(task))
    command = "kernelconv calibrate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    write_output_text(out_path, json.dumps(cal.to_json(command), indent=1) + "\n",
                      "--out-table")
    t = new_table("kernelconv calibrate --unpaired: series", ("kernel", "series", "MTF50",
                                                             "tiles", "note"),
                  wrap=("series", "note"))
    for p in cal.prints:
        fp = p.fingerprint
        t.add_row(p.kernel, short_path(p.folder, archive),
                  "-" if fp.mtf50 is None else f"{fp.mtf50:.2f}", str(fp.tiles),
                  fp.reason or ("used" if fp.valid else ""))
    out.print(t)
    t = new_table(f"kernel figures (anchored on {cal.anchor or 'none'})",
                  ("kernel", "MTF50 lp/cm", "MTF10 lp/cm", "+-", "series"))
    for r in cal.figures():
        t.add_row(r["kernel"], f"{r['mtf50_lpcm']:.2f}", f"{r['mtf10_lpcm']:.2f}",
                  f"{r['uncertainty']:.0%}", str(r["series"]))
    out.print(t)
    out.print(f"anchor window: {cal.anchor_basis}")
    for r in cal.figures():
        if r["kernel"] != cal.anchor and (r["series"] < 2 or r["uncertainty"] > 0.10):
            err.print(f"[yellow]warning[/]: {r['kernel']}: estimated from {r['series']} "
                      f"series, uncertainty {r['uncertainty']:.0%}: an unpaired table from so "
                      "little can convert worse than the built-in table (docs/fingerprint.md); "
                      "add series of this kernel, or calibrate on pairs")
    anchor = next((r for r in cal.figures() if r["kernel"] == cal.anchor), None)
    if anchor is not None and (anchor["series"] < 2 or anchor["uncertainty"] > 0.10):
        err.print(f"[yellow]warning[/]: the anchor {cal.anchor}'s fingerprint rests on "
                  f"{anchor['series']} series, uncertainty {anchor['uncertainty']:.0%}: every "
                  "other kernel's window is relative to it")
    out.print(f"kernel table: {out_path} (use: --method filter --kernel-table {out_path})")
