"""Options that several commands share, declared once, and the one way defaults are shown.

`convert` and `listen` take the same engine and conversion options. Their defaults live in
the services' dataclasses (:class:`~kernelconv.engines.select.EngineSpec`,
:class:`~kernelconv.pipeline.ConvertOptions`, :class:`~kernelconv.pacs.config.ListenConfig`,
:class:`~kernelconv.training.config.TrainConfig`). Each option carries its dataclass default,
which click's ``show_default`` (on for every command, app.py) renders as ``[default: x]``; a
default that is not a value is described, ``[default: (the default model)]``. A command whose
settings can also come from a config file takes only the options given on the command line
(:func:`given`), so the file can set the others ("override the configured value").

A renamed option keeps its old spelling as a hidden alias (:func:`renamed`), so that existing
scripts keep working; docs/usage.md lists the old spellings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from kernelconv.engines.select import BACKENDS, METHODS, PRECISIONS, EngineSpec
from kernelconv.pipeline import KERNEL_CHECKS, ConvertOptions

F = TypeVar("F", bound=Callable[..., Any])

#: the shared options' names (as keyword arguments of the commands)
ENGINE_KEYS = ("method", "model", "device", "precision", "backend", "kernel_table")
CONVERSION_KEYS = ("batch_size", "kernel_map", "source", "max_bias", "kernel_check")


def given(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (a command's keyword arguments) with every option that was not given on the
    command line set to None: a config file (or another layer) may then set it."""
    ctx = click.get_current_context()
    return {k: None if ctx.get_parameter_source(k) in (None, ParameterSource.DEFAULT) else v
            for k, v in values.items()}


def renamed(old: str, dest: str, **attrs: Any) -> Callable[[F], F]:
    """The old spelling ``old`` of a renamed option (whose keyword argument is ``dest``):
    hidden from --help, same type and default, so existing scripts keep working."""
    attrs = {k: v for k, v in attrs.items() if k not in ("help", "required", "metavar")}
    return click.option(old, dest, hidden=True, **attrs)


def device_option(help_text: str, default: str = EngineSpec.device) -> Callable[[F], F]:
    """--device, as `convert`, `listen` and `train` take it."""
    return click.option("--device", default=default, metavar="auto|cpu|cuda|cuda:N",
                        help=help_text)


def precision_option(help_text: str, default: str) -> Callable[[F], F]:
    """--precision fp32|bf16|fp16, the one name of the numeric precision on CUDA, as
    `convert`, `listen` (inference) and `train` (mixed-precision training) take it."""
    return click.option("--precision", type=click.Choice(PRECISIONS), default=default,
                        help=help_text)


def engine_options(func: F) -> F:
    """--method, --model, --device, --precision, --backend, --batch-size, --kernel-map,
    --kernel-table, --max-bias and --from, as `convert` and `listen` both take them."""
    spec = EngineSpec()
    decorators = [
        click.option("--from", "source", metavar="KERNEL",
                     help="Source kernel for every series, overriding ConvolutionKernel "
                          "(0018,1210)."),
        click.option("--method", type=click.Choice(METHODS), default=spec.method,
                     help="model: the GGCL generator. filter: the classical MTF-ratio baseline "
                          "(Ohkubo et al.; an extension beyond the paper) between the kernels "
                          "of the kernel response table; needs no model."),
        click.option("--model", metavar="NAME|PATH", show_default="the default model",
                     help="Model name (see `kernelconv models`) or a model file."),
        click.option("--kernel-map", type=click.Path(exists=True, dir_okay=False,
                                                     path_type=Path),
                     help="File of 'ALIAS = KERNEL' lines adding kernel names (aliases) to "
                          "the model's kernels."),
        click.option("--kernel-table", type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path),
                     help="With --method filter: a JSON kernel table adding kernels to the "
                          "built-in ones, e.g. a site calibration from `kernelconv calibrate`, "
                          "whose fitted transfers the filter then uses (docs/calibration.md)."),
        device_option("Where the model runs: auto is the first CUDA GPU, else the CPU."),
        precision_option("Numeric precision of the model (bf16/fp16: autocast, weights "
                         "stay fp32); the CPU runs fp32 or bf16, ONNX Runtime fp32.",
                         spec.precision),
        click.option("--backend", type=click.Choice(BACKENDS),
                     show_default="torch; onnx for a .onnx --model",
                     help="Run the model with PyTorch or ONNX Runtime (pip install "
                          "'kernelconv[onnx]'; CUDA provider with onnxruntime-gpu; faster on "
                          "CPU, docs/performance.md)."),
        click.option("--batch-size", type=click.IntRange(1, 1024),
                     default=ConvertOptions.batch_size,
                     help="Slices (Enhanced CT: frames) converted and HU-checked together: "
                          "on a GPU one forward pass; on the CPU the network runs one slice "
                          "at a time and this bounds the memory of the filter and the check."),
        click.option("--max-bias", type=click.FloatRange(0.0), default=ConvertOptions.max_bias,
                     metavar="HU",
                     help="Refuse (exit 1, nothing written) a series whose conversion moved the "
                          "local mean HU of soft tissue, fat or lung by more than this: a "
                          "kernel change must not move it (extension; 'inf' turns the limit "
                          "off, the check is still reported)."),
        click.option("--kernel-check", type=click.Choice(KERNEL_CHECKS),
                     default=ConvertOptions.kernel_check,
                     help="Estimate each source kernel's response from its images (its "
                          "noise spectrum; extension): a series whose images contradict "
                          "its kernel name is refused (refuse) or converted with a warning "
                          "(warn); an unknown kernel is converted on the estimate. off: no "
                          "estimate, unknown kernels fail."),
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def engine_spec(values: dict[str, Any], base: EngineSpec | None = None) -> EngineSpec:
    """The EngineSpec of the given options (None: not given, the default stays)."""
    given_keys = {k: values[k] for k in ENGINE_KEYS if values.get(k) is not None}
    return EngineSpec(**{**(base or EngineSpec()).__dict__, **given_keys})


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, (0, 1, 0) otherwise."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        return 0, 1, 0
