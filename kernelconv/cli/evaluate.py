"""`kernelconv evaluate`: converted series against reference series."""

from __future__ import annotations

from pathlib import Path

import click

from kernelconv.cli.app import cli
from kernelconv.cli.options import renamed
from kernelconv.cli.render import new_table, number, out
from kernelconv.errors import InputError
from kernelconv.evaluation.evaluate import Limits, verdict, write_reports
from kernelconv.evaluation.evaluate import evaluate as run_evaluation
from kernelconv.fileio import output_errors, probe_output


@cli.command(epilog="""
\b
Examples:
  kernelconv convert sim/test/patient-000/B70f conv/ --to B30f --method filter
  kernelconv evaluate --pred conv/ --ref sim/test --truth sim/test \\
      --report-dir eval/filter
  kernelconv evaluate --pred sim/test/patient-000/B70f --ref sim/test \\
      --truth sim/test --target B30f --label identity \\
      --report-dir eval/identity

\b
Writes DIR/evaluation.md (a table laid out like the paper's Table 2, then
every metric), DIR/evaluation.json, DIR/nps.png and DIR/difference.png.
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
@click.option("--report-dir", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("kernelconv-evaluation"), metavar="DIR",
              help="Folder for the reports (created).")
@renamed("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
         default=Path("kernelconv-evaluation"))
@click.option("--label", default="", show_default="the --pred folder's name",
              help="Method name for the report.")
@click.option("--qa", is_flag=True,
              help="The series are the simulator's QA phantom (simulate --phantom qa): also "
                   "measure MTF50/MTF10 of prediction and reference from its rod's edge.")
@click.option("--pass-max-bias", "max_bias", type=click.FloatRange(0.0),
              default=Limits.max_bias_hu, metavar="HU",
              help="Pass limit: |mean-HU bias| in soft tissue and fat. Only judged in the "
                   "report (unlike convert's --max-bias, which refuses a series).")
@renamed("--max-bias", "max_bias", type=click.FloatRange(0.0), default=Limits.max_bias_hu)
@click.option("--max-noise-error", type=click.FloatRange(0.0),
              default=Limits.max_noise_error,
              help="Pass limit: |noise SD ratio - 1| against the reference.")
@click.option("--max-laa-diff", type=click.FloatRange(0.0), default=Limits.max_laa_diff_pp,
              help="Pass limit: |LAA-950| and |LAA-910| difference (percentage points).")
@click.option("--min-nps-corr", type=click.FloatRange(-1.0, 1.0),
              default=Limits.min_nps_correlation,
              help="Pass limit: correlation of the NPS curves (shape).")
@click.option("--max-mtf50-error", type=click.FloatRange(0.0),
              default=Limits.max_mtf50_error,
              help="Pass limit with --qa: |MTF50 ratio - 1| against the reference.")
def evaluate(pred_dir: Path, ref_dir: Path, truth_dir: Path | None, target: str | None,
             out_dir: Path, label: str, qa: bool, max_bias: float, max_noise_error: float,
             max_laa_diff: float, min_nps_corr: float, max_mtf50_error: float) -> None:
    """Compare converted series with reference series of the same anatomy (an extension
    beyond the paper, which reports PSNR/SSIM only).

    Slices are paired by position. Per direction: PSNR and SSIM on HU clipped to
    [-1024, 3071] with data range 4095 (the paper's setting), RMSE and MAE, mean-HU bias in
    soft tissue, fat, lung and bone, noise SD ratio and NPS peak frequency versus the
    reference (and the correlation of the NPS curves), the LAA-950 and LAA-910 differences,
    and pass/fail against the limits below (defaults and their reasons: docs/evaluation.md;
    the exit status does not depend on them).
    """
    for path in (pred_dir, ref_dir) + ((truth_dir,) if truth_dir else ()):
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
    probe_output(out_dir, "--report-dir", folder=True)
    limits = Limits(max_bias, max_noise_error, max_laa_diff, min_nps_corr, max_mtf50_error)
    results = run_evaluation(pred_dir, ref_dir, truth_dir, target, limits=limits, qa=qa)
    label = label or pred_dir.name
    with output_errors(out_dir, "--report-dir"):
        paths = write_reports(results, out_dir, label)
    # RMSE is in the report: PSNR over 4095 HU says the same
    t = new_table(f"kernelconv evaluate: {label} (PSNR/SSIM over 4095 HU, the paper's "
                  "setting)", ("direction", "slices", "PSNR dB", "SSIM", "noise ratio",
                               "NPS peak pred/ref", "LAA-950 diff pp", "verdict"))
    summaries = [r.summary() for r in results]
    for d in summaries:
        t.add_row(d["direction"], str(d["slices"]), number(d["psnr_db"]),
                  number(d["ssim"], ".4f"), number(d["noise_ratio"]),
                  f"{number(d['nps_peak_pred_lpcm'], '.1f')}/"
                  f"{number(d['nps_peak_ref_lpcm'], '.1f')}",
                  number(d["laa950_diff_pp"], "+.2f"), verdict(d, short=True))
    out.print(t)
    out.print(f"report: {paths['markdown']} (and evaluation.json, nps.png, difference.png)")
    for d in summaries:
        if d.get("mtf50_pred_lpcm") is not None:
            out.print(f"{d['direction']}: MTF50 {number(d['mtf50_pred_lpcm'])} lp/cm "
                      f"(reference {number(d['mtf50_ref_lpcm'])}), MTF10 "
                      f"{number(d['mtf10_pred_lpcm'])} ({number(d['mtf10_ref_lpcm'])})")
        if d["passed"] is False:
            out.print(f"{d['direction']}: {verdict(d)} (limits: --pass-max-bias, "
                      "--max-noise-error, --max-laa-diff, --min-nps-corr, --max-mtf50-error)")


