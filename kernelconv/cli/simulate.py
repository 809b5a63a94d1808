"""`kernelconv simulate` and `kernelconv qa`: the simulator and its measurement."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.progress import Progress

from kernelconv.cli.app import cli
from kernelconv.cli.render import err, new_table, number, out, progress_columns
from kernelconv.errors import EXIT_OK, EXIT_SERIES_FAILED, UsageError
from kernelconv.fileio import output_errors, probe_output, write_output_text

SIMULATE_EPILOG = """
\b
Examples:
  kernelconv simulate sim/train --patients 8 --slices 32 --seed 1
  kernelconv simulate sim/test --patients 2 --slices 16 --seed 1001 --dose 0.5
  kernelconv simulate sim/qa --phantom qa --slices 16
  kernelconv simulate sim/x --kernels B30f,B70f,B45x --kernel-table my.json
  kernelconv simulate sim/train --patients 32 --slices 8 --randomise --seed 7
  kernelconv simulate sim/fov --fov 480 --table
  kernelconv simulate sim/resim --from-dicom real-ct/ --slices 8  # real CT

Writes OUT/patient-NNN/<kernel>/IMnnnn (one series per kernel, same study,
slices paired by position), OUT/patient-NNN/truth.npz (noiseless HU and lung
mask) and OUT/simulation.json; with --from-dicom OUT/resim-NNN/, one per source
series. Finished patients are kept, so an interrupted run resumes.
"""


@cli.command(epilog=SIMULATE_EPILOG)
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--patients", type=click.IntRange(1, 100000), default=1,
              help="Patients (phantoms) to simulate.")
@click.option("--slices", type=click.IntRange(1, 2000), default=16,
              help="Slices per patient (1 mm apart).")
@click.option("--kernels", default="B30f,B50f,B70f",
              help="Comma-separated kernels from the kernel table.")
@click.option("--seed", type=int, default=0,
              help="Anatomy and noise seed; patient i uses a seed derived from (seed, i).")
@click.option("--dose", type=click.FloatRange(0.01, 100.0), default=1.0,
              help="Relative dose (1.0: B30f soft-tissue noise about 15 HU).")
@click.option("--phantom", type=click.Choice(["chest", "qa"]), default="chest",
              help="Adult chest, or the QA phantom (water, rod) at 10x dose.")
@click.option("--kernel-table", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON list of extra kernel definitions (see docs/simulation.md).")
@click.option("--fov", type=click.FloatRange(100.0, 700.0), default=350.0,
              help="Field of view (mm) on 512 pixels (chest): 350 mm = 0.684 mm pixels.")
@click.option("--table", "with_table", is_flag=True, help="A patient table below the chest.")
@click.option("--randomise", is_flag=True,
              help="Extension: domain randomisation per patient (noise x0.5-3, field of view "
                   "250-500 mm, body size, table, padding outside the circle, kernel jitter; "
                   "docs/simulation.md). Overrides --fov and --table.")
@click.option("--from-dicom", "from_dicom", type=click.Path(exists=True, path_type=Path),
              help="Extension: re-simulate every CT series under this folder (real anatomy, "
                   "denoised, then scanned with every kernel at its own pixel size); "
                   "--slices takes the middle N slices of each (all when larger).")
def simulate(output_path: Path, patients: int, slices: int, kernels: str, seed: int,
             dose: float, phantom: str, kernel_table: Path | None, fov: float,
             with_table: bool, randomise: bool, from_dicom: Path | None) -> None:
    """Simulate paired multi-kernel CT: the same anatomy and noise, one series per kernel.

    A physics-based simulator (an extension beyond the paper): a procedural chest phantom
    on a grid 2x finer than the output, parallel-beam projection with detector aperture and
    focal spot, Poisson and electronic noise (one realisation per slice shared by all
    kernels), and FBP with each kernel's window. See docs/simulation.md.
    """
    from kernelconv.kernel_response import load_response_table
    from kernelconv.sim.series import SimulationConfig
    from kernelconv.sim.series import simulate as run_simulation

    table = load_response_table(kernel_table)
    names = tuple(k.strip() for k in kernels.split(",") if k.strip())
    unknown = [k for k in names if k not in table]
    if not names or unknown:
        raise UsageError(f"--kernels: unknown kernel(s) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(table)}")
    config = SimulationConfig(patients=patients, slices=slices, kernels=names, seed=seed,
                              dose=dose, phantom=phantom, fov=fov, table=with_table,
                              randomise=randomise)
    probe_output(output_path, "OUT", folder=True)
    if from_dicom is not None:
        from kernelconv.sim.resim import resimulate

        if phantom != "chest":
            raise UsageError("--from-dicom re-simulates real images; --phantom does not apply")
        with Progress(*progress_columns("slices"), console=err) as bar:
            task = bar.add_task(f"re-simulating {from_dicom}", total=None)
            folders = resimulate(output_path, from_dicom, config, table,
                                 on_slice=lambda n: bar.advance(task, n))
        out.print(f"wrote {len(folders)} re-simulated series folder(s) with kernels "
                  f"{', '.join(names)} under {output_path}")
        return
    with Progress(*progress_columns("slices"), console=err) as bar, \
            output_errors(output_path, "OUT"):  # the simulator reads nothing but its table
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
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Write the MTF curves as a PNG (its folder created).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.json", help="Write the measurements as JSON (its folder created).")
@click.option("--kernel-table", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON kernel table with the specs of user kernels.")
def qa(series_dir: Path, plot: Path | None, json_path: Path | None,
       kernel_table: Path | None) -> None:
    """Measure MTF (circular edge: MTF50, MTF10, peak) and noise of QA-phantom series.

    Every CT series under SERIES_DIR is measured; noise is also given relative to B30f.
    Kernels with a specification are checked against it; the exit code is 1 if any target
    is missed. Series with fewer slices than a stable figure needs are flagged, with the
    difference between the two halves of their slices.
    """
    from kernelconv.evaluation.qa import MIN_STABLE_SLICES, measure_qa, plot_mtf
    from kernelconv.kernel_response import load_response_table

    for path, what in ((plot, "--plot"), (json_path, "--json")):
        if path is not None:
            probe_output(path, what, folder=False)
    table = load_response_table(kernel_table)
    results = measure_qa(series_dir)
    t = new_table("kernelconv qa: measured vs spec",
                  ("kernel", "slices", "MTF50 lp/cm", "MTF10 lp/cm", "max MTF", "noise SD HU",
                   "noise / B30f", "spec"), wrap=("spec",))
    failed = False
    rows = []
    for r in results:
        checks = r.checks(table.get(r.kernel))
        failed |= not all(checks.values())
        verdict = ("[green]ok[/]" if checks and all(checks.values()) else
                   "[red]MISSES " + ", ".join(k for k, ok in checks.items() if not ok) + "[/]"
                   if checks else "no spec")
        # too few slices: marked here, explained below the table
        t.add_row(r.kernel, f"{r.slices}{'' if r.stable else '*'}", number(r.mtf.mtf50),
                  number(r.mtf.mtf10), f"{r.mtf.peak:.3f}", f"{r.noise_sd:.1f}",
                  number(r.noise_ratio), verdict)
        rows.append({"kernel": r.kernel, "folder": r.folder, "slices": r.slices,
                     "mtf50": r.mtf.mtf50, "mtf10": r.mtf.mtf10, "peak": r.mtf.peak,
                     "noise_sd": r.noise_sd, "noise_ratio": r.noise_ratio, "checks": checks,
                     "stable": r.stable, "split_half_difference": r.split_half})
    out.print(t)
    for r in results:
        if not r.stable:
            halves = (f"; its two halves differ by {r.split_half['mtf50']:.2f} (MTF50) and "
                      f"{r.split_half['mtf10']:.2f} lp/cm (MTF10)" if r.split_half else "")
            out.print(f"* {r.kernel}: {r.slices} slice(s) are too few for a stable figure (use "
                      f">= {MIN_STABLE_SLICES}: docs/simulation.md gives the measured "
                      f"run-to-run spread per slice count){halves}")
    if plot:
        with output_errors(plot, "--plot"):
            plot_mtf(results, plot, table)
        out.print(f"MTF plot: {plot}")
    if json_path:
        write_output_text(json_path, json.dumps(rows, indent=2) + "\n", "--json")
    sys.exit(EXIT_SERIES_FAILED if failed else EXIT_OK)


