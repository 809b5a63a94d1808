"""Options that several commands share, declared once.

`convert` and `listen` take the same engine and conversion options. Their defaults live in
the services' dataclasses (:class:`~kernelconv.engines.select.EngineSpec`,
:class:`~kernelconv.pipeline.ConvertOptions`, :class:`~kernelconv.pacs.config.ListenConfig`);
click passes None for an option that was not given, so a listener's config file can set it and
the command line overrides it ("override the configured value"). The help shows the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kernelconv.engines.select import BACKENDS, METHODS, PRECISIONS, EngineSpec
from kernelconv.pipeline import ConvertOptions

F = TypeVar("F", bound=Callable[..., Any])

#: the shared options' names (as keyword arguments of the commands)
ENGINE_KEYS = ("method", "model", "device", "precision", "backend", "kernel_table")
CONVERSION_KEYS = ("batch_size", "kernel_map", "source", "max_bias")


def _default(value: object) -> str:
    return f" [default: {value}]" if value is not None else ""


def engine_options(func: F) -> F:
    """--method, --model, --device, --precision, --backend, --batch-size, --kernel-map and
    --from, as `convert` and `listen` both take them."""
    spec = EngineSpec()
    decorators = [
        click.option("--from", "source", metavar="KERNEL",
                     help="Source kernel for every series, overriding ConvolutionKernel "
                          "(0018,1210)."),
        click.option("--method", type=click.Choice(METHODS), default=None,
                     help="model: the GGCL generator. filter: the classical MTF-ratio baseline "
                          "(Ohkubo et al.; an extension beyond the paper) between the kernels "
                          "of the kernel response table; needs no model." + _default(spec.method)),
        click.option("--model", metavar="NAME|PATH",
                     help="Model name (see `kernelconv models`) or a model file [default: the "
                          "default model]."),
        click.option("--kernel-map", type=click.Path(exists=True, dir_okay=False,
                                                     path_type=Path),
                     help="File of 'ALIAS = KERNEL' lines adding kernel names (aliases) to "
                          "the model's kernels."),
        click.option("--kernel-table", type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path),
                     help="With --method filter: a JSON kernel table adding kernels to the "
                          "built-in ones, e.g. a site calibration from `kernelconv calibrate`, "
                          "whose fitted transfers the filter then uses (docs/calibration.md)."),
        click.option("--device", default=None,
                     help="auto, cpu, cuda or cuda:N." + _default(spec.device)),
        click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                     help="Autocast precision on CUDA; the CPU always runs fp32."
                          + _default(spec.precision)),
        click.option("--backend", type=click.Choice(BACKENDS), default=None,
                     help="Run the model with PyTorch [default] or ONNX Runtime (pip install "
                          "'kernelconv[onnx]'; CUDA provider with onnxruntime-gpu; faster on "
                          "CPU, docs/performance.md). A .onnx --model always runs with onnx."),
        click.option("--batch-size", type=click.IntRange(1, 1024), default=None,
                     help="Slices per forward pass." + _default(ConvertOptions.batch_size)),
        click.option("--max-bias", type=click.FloatRange(0.0), default=None, metavar="HU",
                     help="Refuse (exit 1, nothing written) a series whose conversion moved the "
                          "local mean HU of soft tissue, fat or lung by more than this: a "
                          "kernel change must not move it (extension; 'inf' turns the limit "
                          "off, the check is still reported)."
                          + _default(ConvertOptions.max_bias)),
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def engine_spec(values: dict[str, Any], base: EngineSpec | None = None) -> EngineSpec:
    """The EngineSpec of the given options (None: not given, the default stays)."""
    given = {k: values[k] for k in ENGINE_KEYS if values.get(k) is not None}
    return EngineSpec(**{**(base or EngineSpec()).__dict__, **given})


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, (0, 1, 0) otherwise."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        return 0, 1, 0
