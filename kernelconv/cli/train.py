"""`kernelconv train` and `kernelconv export`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.progress import Progress, TextColumn

from kernelconv.cli.app import cli
from kernelconv.cli.options import device_option, given, precision_option, renamed
from kernelconv.cli.render import err, out, progress_columns
from kernelconv.engines.select import PRECISIONS
from kernelconv.errors import UsageError
from kernelconv.fileio import probe_output
from kernelconv.training.config import TrainConfig

_T = TrainConfig()
#: --precision (the name `convert` uses too) <-> TrainConfig.amp, the config file's key
AMP_PRECISION = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}
AMP_OF = {**{v: k for k, v in AMP_PRECISION.items()}, "none": "none"}  # --amp none

TRAIN_EPILOG = """
\b
Examples:
  kernelconv simulate sim/train --patients 16 --slices 32 --seed 1
  kernelconv train --data sim/train --run-dir runs/ggcl  # the paper's
  kernelconv train --data sim/train --run-dir runs/cpu --crop 256 --iters 2000
  kernelconv train --data sim/train --run-dir runs/ggcl --resume  # continue
  kernelconv train --data sim/train --run-dir runs/ggcl --resume \\
      --max-minutes 9                                  # in pieces
  kernelconv train --data sim/train --run-dir runs/ggdr --reg ggdr  # ablation
  torchrun --nproc-per-node 4 -m kernelconv train --data sim/train \\
      --run-dir runs/ggcl
  kernelconv export runs/ggcl --name my-ggcl
  kernelconv train --data site/ --run-dir runs/site --init resim-fr-v1

Settings not given as options come from --config FILE (JSON, the fields of
TrainConfig in kernelconv/training/config.py; --precision is its "amp": fp32 is
"none") or the paper's defaults shown here (docs/training.md).
"""


@cli.command(epilog=TRAIN_EPILOG)
@click.option("--data", "data_dirs", multiple=True, required=True,
              type=click.Path(path_type=Path), help="DICOM folder(s) of training series.")
@click.option("--run-dir", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/ggcl"),
              help="Run folder: cache, checkpoints, TensorBoard logs.")
@renamed("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path),
         default=Path("runs/ggcl"))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="JSON training config.")
@click.option("--iters", type=click.IntRange(1), default=_T.iters,
              help="Iterations (the paper's).")
@click.option("--batch-size", type=click.IntRange(1), default=_T.batch_size,
              help="Batch size (the paper's).")
@click.option("--crop", type=click.IntRange(128), show_default="full slices, the paper's",
              help="Random crop size, a multiple of 128. Faster, but the generator's instance "
                   "norm then sees other statistics than on the full slices it converts: "
                   "finish on full slices (docs/training.md).")
@click.option("--reg", type=click.Choice(["ggcl", "ggdr", "none"]), default=_T.reg,
              help="Discriminator regulariser (the paper's: ggcl).")
@click.option("--paired", is_flag=True,
              help="Extension: add an L1 term to the real target slice (paired data only).")
@click.option("--kernels", default=",".join(_T.domains),
              help="Comma-separated training kernels, in label order. With --init, NEW=OLD "
                   "entries (e.g. FC13=B30f,FC51=B70f) train a site's own kernels, each label "
                   "starting from the source model's OLD label (extension).")
@click.option("--kernel-table", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Extension: JSON kernel table (e.g. from `kernelconv calibrate`) giving the "
                   "filter_residual base filter its kernels and fitted transfers (config "
                   "g_base_transfers: false for the windows alone); stored in exported models.")
@click.option("--seed", type=int, default=_T.seed, help="Random seed.")
@click.option("--ckpt-every", type=click.IntRange(1), default=_T.ckpt_every,
              help="Checkpoint interval (iterations).")
@precision_option("Mixed precision of training on CUDA (autocast; fp16 with a gradient "
                  "scaler); the CPU trains in fp32. The config's \"amp\" (none = fp32).",
                  AMP_PRECISION[_T.amp])
@renamed("--amp", "precision", type=click.Choice(["none", *PRECISIONS]))
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the nets.")
@device_option("Where to train: auto is the first CUDA GPU, else the CPU.")
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
          precision: str | None, compile_: bool | None, device: str, resume: bool,
          init_spec: str | None, max_minutes: float | None, val_dir: Path | None,
          kernel_table: Path | None) -> None:
    """Train the GGCL StarGAN (generator and U-Net discriminator) on DICOM series.

    Each series' kernel (ConvolutionKernel) is its domain. The series are decoded once into
    a cache in the run folder; batches are random (crops of) slices with their domain labels,
    unpaired as in the paper.
    """
    from kernelconv.training.loop import train as run_training

    # only what the command line gives overrides the config file (options.given)
    opt = given({"iters": iters, "batch_size": batch_size, "crop": crop, "reg": reg,
                 "paired": paired, "seed": seed, "ckpt_every": ckpt_every,
                 "precision": precision, "compile_": compile_, "kernels": kernels})
    probe_output(run_dir, "--run-dir", folder=True)
    file_settings = TrainConfig.read_file(config_file) if config_file else {}
    cfg = TrainConfig().updated(file_settings, str(config_file or "defaults"))
    overrides = {k: v for k, v in {
        "iters": opt["iters"], "batch_size": opt["batch_size"], "crop": opt["crop"],
        "reg": opt["reg"], "paired": opt["paired"], "seed": opt["seed"],
        "ckpt_every": opt["ckpt_every"], "compile": opt["compile_"],
        "amp": None if opt["precision"] is None else AMP_OF[opt["precision"]],
        **kernel_settings(opt["kernels"]),
        "kernel_table": str(kernel_table.resolve()) if kernel_table else None,
    }.items() if v is not None}
    cfg = cfg.updated(overrides, "options")
    if cfg.spectral_data:  # folders relative to where the command runs, as --data's are
        cfg = cfg.updated({"spectral_data": [str(Path(d).resolve()) for d in cfg.spectral_data]},
                          "spectral_data")
    init_source = None
    if init_spec:
        from kernelconv.training.warmstart import adopt_settings, load_init

        init_source = load_init(init_spec)
        explicit = set(overrides) | set(file_settings)
        cfg = cfg.updated({**adopt_settings(cfg, init_source, explicit),
                           "init": init_source.label}, "--init")
    columns = progress_columns("it", TextColumn("{task.fields[rate]}"),
                               TextColumn("{task.fields[losses]}"))
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("training", total=cfg.iters, rate="", losses="")
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


def kernel_settings(kernels: str | None) -> dict[str, object]:
    """``--kernels``: "B30f,B50f,B70f", or "NEW=OLD,..." (the site's kernels and the source
    labels they start from)."""
    if not kernels:
        return {}
    items = [k.strip() for k in kernels.split(",") if k.strip()]
    if not any("=" in k for k in items):
        return {"domains": items}
    pairs = [k.partition("=") for k in items]
    if any(not sep or not new.strip() or not old.strip() for new, sep, old in pairs):
        from kernelconv.errors import UsageError

        raise UsageError(f"--kernels {kernels}: give every kernel as NEW=OLD, or none")
    return {"domains": [n.strip() for n, _, _ in pairs],
            "init_domains": {n.strip(): o.strip() for n, _, o in pairs}}


@cli.command(epilog="""
\b
Examples:
  kernelconv export runs/ggcl --name my-ggcl      # into the user models
  kernelconv export runs/ggcl/checkpoints/ckpt-00400000.pt --name ggcl-400k \\
      --half
  kernelconv export runs/ggcl --name default-ggcl --models-dir models
  kernelconv export runs/ggcl --name my-ggcl --onnx  # model and NAME.onnx
  kernelconv export my-ggcl --onnx --models-dir deploy/  # an installed model
  kernelconv export resim-fr-v1 --name my-routed --use-filter sharpening
""")
@click.argument("source", metavar="RUN_DIR|CKPT|MODEL", type=click.Path(path_type=Path))
@click.option("--name", help="Model name (file NAME.safetensors); required from a run.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path),
              show_default="the user models folder", help="Where to write the model.")
@click.option("--half", is_flag=True, help="Store fp16 weights (half the size).")
@click.option("--use-filter", "use_filter", multiple=True, metavar="DIRECTION",
              help="Run the noise-limited filter instead of the network in DIRECTION "
                   "(SRC->TGT, or sharpening / smoothing for all such directions), where an "
                   "evaluation showed the network does not beat it; repeatable (extension). "
                   "From an installed model: writes a copy under --name.")
@click.option("--onnx", "as_onnx", is_flag=True,
              help="Also write NAME.onnx (opset 18, fp32, dynamic batch/height/width, kernelconv "
                   "metadata) for ONNX Runtime (needs kernelconv[onnx]).")
def export(source: Path, name: str | None, models_dir: Path | None, half: bool,
           use_filter: tuple[str, ...], as_onnx: bool) -> None:
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
        path = export_model(source, name, models_dir, half, use_filter=use_filter)
        out.print(f"model written: {path}")
    elif use_filter:
        from kernelconv.training.export import route_installed_model

        if name is None:
            raise UsageError("export --use-filter from an installed model: --name is required "
                             "(the routed copy's name)")
        if half:
            raise UsageError("export --use-filter from an installed model keeps its weights as "
                             "they are: --half applies to a run or checkpoint only")
        path = route_installed_model(resolve_model(str(source)), name, models_dir, use_filter)
        out.print(f"model written: {path} (the weights of {source}, per-direction use set)")
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


