"""Batched HU -> HU converters behind one small interface. No DICOM here.

:func:`kernelconv.engines.select.select_engine` is how a command gets one: it resolves the
model (or the filter) once and returns a lazy factory with the domains and model metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from kernelconv.kernel_response import REFERENCE_PIXEL_MM, KernelResponse, KernelTable
from kernelconv.modelfile import direction_key, direction_use_digest

if TYPE_CHECKING:
    from kernelconv.engines.filter_engine import FilterEngine
    from kernelconv.modelfile import ModelInfo


class Engine(Protocol):
    """Converts batches of slices in HU from one kernel domain to another."""

    #: human-readable method, written to DerivationDescription
    description: str
    #: stable identifier, part of derived UIDs (model id, or filter id)
    method_id: str
    #: the domains (kernel names) it converts between, in label order
    domains: tuple[str, ...]
    #: sharpness rank per domain (higher = sharper), for the derivation code
    domain_sharpness: dict[str, float]
    #: the kernel responses (and fitted transfers) this engine converts with; the HU check
    #: takes its expected noise ratio from the same table
    kernel_table: KernelTable

    def add_kernel(self, response: KernelResponse) -> None:
        """Know one more kernel (a series' kernel estimated from its images): afterwards
        ``convert`` takes it as a source and ``kernel_table`` holds it."""
        ...

    def describe(self, source: str, target: str) -> str:
        """What converts ``source`` -> ``target`` (for DerivationDescription and the report):
        ``description``, or what a model runs in that direction instead (its filter)."""
        ...

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = REFERENCE_PIXEL_MM) -> np.ndarray:
        """(B, H, W) float32 HU in ``source`` kernel -> (B, H, W) float32 HU in ``target``.

        ``pixel_mm`` is the pixel spacing; engines whose response is defined in lp/cm (the
        filter) need it, the network ignores it (it was trained at one pixel size).
        """
        ...


def direction_method_id(engine: Engine, source: str, target: str) -> str:
    """The method id for the UIDs of ``source`` -> ``target``: the engine's ``method_id``, or
    what a model runs in that direction instead (its filter, with the filter's version)."""
    for_direction = getattr(engine, "method_id_for", None)
    return for_direction(source, target) if callable(for_direction) else engine.method_id


def model_kernels(info: ModelInfo) -> tuple[str, ...]:
    """Every kernel a model converts between: its network's labels first, then (extension)
    the other kernels of its kernel table (built-in vendor kernels, a calibration it
    carries), which it converts with its filter where the network has no label. A model whose
    stored responses are learnt windows (only their ratios mean anything) keeps its labels."""
    table = model_kernel_table(info)
    if not table.descriptive:
        return tuple(info.domains)
    return tuple(info.domains) + tuple(k for k in table.responses if k not in info.domains)


def describe_direction(engine: Engine, source: str, target: str) -> str:
    """What converts ``source`` -> ``target``: the engine's ``describe`` where it has one (a
    model that runs its filter in some directions), else its ``description``."""
    describe = getattr(engine, "describe", None)
    return describe(source, target) if callable(describe) else engine.description


def network_runs(domains: tuple[str, ...], direction_use: dict[str, str],
                 responses: dict[str, KernelResponse], source: str, target: str) -> bool:
    """Whether a model's network converts ``source`` -> ``target`` (else its filter), from its
    labels ``domains``, its per-direction map and its kernel ``responses``; see
    :meth:`GeneratorEngine.uses_network`."""
    if target not in domains:  # no label for it: only the filter can convert
        return False
    if not direction_use or source == target:
        return True
    use = direction_use.get(direction_key(source, target))
    if use is not None:
        return use == "network"
    if source in domains:  # a direction the map does not name: the network
        return True
    from kernelconv.kernel_response import mtf_figures

    # sharpening or smoothing, by MTF50 on the reference scanner: one scale for every
    # response (built-in, calibrated, estimated), unlike the tables' sharpness ranks
    if source not in responses or target not in responses:
        return True
    mtf50 = {k: mtf_figures(v)[0] for k, v in responses.items()
             if k in (source, target) or k in domains}
    sharpening = mtf50[target] > mtf50[source]
    same_kind = [use for key, use in direction_use.items()
                 if key.endswith(f"->{target}") and key.split("->")[0] in mtf50
                 and (mtf50[target] > mtf50[key.split("->")[0]]) == sharpening]
    return all(use == "network" for use in same_kind)


def filter_route_reason(domains: tuple[str, ...], target: str) -> str:
    """Why a model runs its filter towards ``target`` (the words DerivationDescription, the
    report and a dry run's plan share)."""
    return (f"its network has no {target} label (extension)" if target not in domains
            else "where its network did not beat it (measured, extension)")


def planned_route(info: ModelInfo, source: str, target: str) -> str:
    """For a plan (a dry run, no weights loaded): "" where the network will convert
    ``source`` -> ``target``, else what the model will run instead, in the words of
    :meth:`GeneratorEngine.describe`'s tail."""
    if network_runs(tuple(info.domains), dict(info.direction_use),
                    model_kernel_table(info).responses, source, target):
        return ""
    return (f"model {info.model_id} runs the filter for {source} -> {target}, "
            f"{filter_route_reason(tuple(info.domains), target)}")


def one_hot(index: int, count: int, batch: int) -> np.ndarray:
    """(batch, count) float32 one-hot target labels."""
    labels = np.zeros((batch, count), dtype=np.float32)
    labels[:, index] = 1.0
    return labels


class GeneratorEngine:
    """What the backends running the GGCL generator share: identity (domains, sharpness,
    method id) from the model's metadata, and ``convert`` around the backend's forward pass
    (the paper's HU normalisation, padding to the network's multiple, crop back, HU)."""

    def __init__(self, info: ModelInfo, multiple: int, backend: str = "") -> None:
        from kernelconv.kernel_response import domain_sharpness

        self.info = info
        self.multiple = multiple
        #: HU-preserving variants (extension): the classical filter the network corrects
        self.base_filter = base_filter_for(info)
        #: the kernels the model converts with: the responses stored in the model file over
        #: the built-in table. The HU check, the base filter's other sources and the route
        #: filter (targets the network has no label for) all take them from here.
        self.kernel_table = model_kernel_table(info)
        #: the network's labels, in label order
        self.domains = tuple(info.domains)
        self.domain_sharpness = domain_sharpness(self.domains, info.domain_sharpness)
        # another backend's results differ by a fraction of an HU: its derived UIDs must too
        self.method_id = f"{info.model_id}+{backend}" if backend else info.model_id
        #: per-direction use (extension): directions where the network did not beat the
        #: filter run the noise-limited filter on the model's own kernel table instead. The
        #: map is not in the weights' checksum, so its digest is in the method id.
        self.direction_use = dict(info.direction_use)
        self._route_filter: FilterEngine | None = None
        digest = direction_use_digest(self.direction_use)
        if digest:  # with the filter's own version: a changed filter gets other UIDs
            self.method_id += f"+use-{digest}"
            if "filter" in self.direction_use.values():
                self.method_id += f"-{self.route_filter().algorithm_id}"
        output = info.arch_args.get("output", "direct")
        kind = ("GGCL StarGAN generator" if output == "direct" else
                f"GGCL StarGAN generator, HU-preserving {output} variant (extension)")
        self.description = f"{kind}, model {info.model_id}" + (
            " (ONNX Runtime)" if backend == "onnx" else "")

    def add_kernel(self, response: KernelResponse) -> None:
        """A source kernel the model's domains do not include (estimated from a series'
        images): the base filter converts from it; a direct generator needs nothing, its
        input is the image and the target label alone."""
        import dataclasses

        if self.base_filter is not None:
            self.base_filter.add_kernel(response)
        self.kernel_table = dataclasses.replace(
            self.kernel_table, responses={**self.kernel_table.responses, response.name: response})
        if self._route_filter is not None:
            self._route_filter.add_kernel(response)

    def forward(self, unit: np.ndarray, target: int,
                base: np.ndarray | None = None) -> np.ndarray:
        """(B, 1, H, W) network input (and, for filter_residual, the filter's conversion of it
        on the same scale) -> (B, 1, H, W) output in [-1, 1], as numpy."""
        raise NotImplementedError

    def correction_is_zero(self) -> bool:
        """Whether a filter_residual model's correction is exactly zero (its last layer's
        weights all zero: a model whose network was never trained, as with learnt kernel
        windows alone), so its output is the base filter's and the network need not run."""
        return False

    def uses_network(self, source: str, target: str) -> bool:
        """Whether the network converts ``source`` -> ``target`` (else the route filter).

        A direction the map names is decided by the map. A source outside the model's
        domains (a vendor kernel from the table, an estimate from the images) takes the
        network only where every listed direction into ``target`` of the same kind
        (sharpening or smoothing) uses it: the cautious reading of a measurement made on
        other kernels."""
        return network_runs(self.domains, self.direction_use, self.kernel_table.responses,
                            source, target)

    def route_filter(self) -> FilterEngine:
        """The noise-limited filter on the model's kernel table (what ``--method filter``
        runs), for the directions the model routes to it."""
        if self._route_filter is None:
            from kernelconv.engines.filter_engine import FilterEngine

            device = str(getattr(self, "device", "cpu"))  # the model's GPU, if it runs on one
            self._route_filter = FilterEngine(
                self.kernel_table, device=device if device.startswith("cuda") else "cpu")
        return self._route_filter

    def describe(self, source: str, target: str) -> str:
        if self.uses_network(source, target):
            return self.description
        return (f"{self.route_filter().description}; model {self.info.model_id} runs the filter "
                f"for {source} -> {target}, {filter_route_reason(self.domains, target)}")

    def method_id_for(self, source: str, target: str) -> str:
        """The method id for the UIDs of ``source`` -> ``target``: ``method_id`` for a target
        label (a direction map that routes to the filter already put the filter's version
        into it), plus the route filter's version for a target outside the labels."""
        if target in self.domains:
            return self.method_id
        return f"{self.method_id}+{self.route_filter().algorithm_id}"

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = REFERENCE_PIXEL_MM) -> np.ndarray:
        """Convert (B, H, W) HU; any H and W (reflect-padded to the network's multiple)."""
        from kernelconv.errors import KernelconvError
        from kernelconv.hu import network_input, unit_to_hu

        table = self.kernel_table.responses
        if target not in self.domains and (target not in table or not self.kernel_table.descriptive):
            raise KernelconvError(f"target kernel {target} is not one of {self.domains}")
        if not self.uses_network(source, target):
            if source not in table:
                raise KernelconvError(f"source kernel {source} has no response in the "
                                      "model's kernel table")
            return self.route_filter().convert(hu, source, target, pixel_mm)
        lo, hi = self.info.hu_range
        unit, (rows, cols) = network_input(hu, lo, hi, self.multiple)
        base = None
        if self.base_filter is not None:
            if source not in self.base_filter.domains and source in table:
                self.base_filter.add_kernel(table[source])  # a vendor kernel of the table
            if source not in self.base_filter.domains:
                raise KernelconvError(f"source kernel {source} has no response for the "
                                      "model's base filter")
            # from the input as stored: only the network's own input is clipped to the
            # paper's window. Scanners that store noise below -1024 HU (Canon: 11 % of a lung
            # kernel's pixels) otherwise get their air and lung raised by the clipping before
            # the smoothing; the filter fills out-of-field padding itself. Measured on the
            # real phantom FC51 -> FC13 with the default model (read as B70f -> B30f): lung
            # bias +7.7 -> +0.8 HU, 46.69 -> 47.50 dB. Data stored at a -1024 floor (the
            # simulator's, Siemens') are unchanged.
            base_hu = self.base_filter.convert(hu, source, target, pixel_mm)
            base = network_input(base_hu, lo, hi, self.multiple)[0]
        if base is not None and self.correction_is_zero():
            out = base  # base + a correction of exactly zero: the network adds nothing
        else:
            out = self.forward(unit, self.domains.index(target), base)
        # unclipped: the encoding clips to the stored range, the HU check needs the values
        return unit_to_hu(out[:, 0, rows, cols], lo, hi, clip=False)


def model_kernel_table(info: ModelInfo) -> KernelTable:
    """The kernel table a model converts with: the built-in table, overridden by the kernel
    responses stored in the model file (learnt windows, a site's calibration)."""
    from kernelconv.errors import ModelError
    from kernelconv.kernel_response import (
        builtin_table,
        responses_from_json,
        transfers_from_json,
    )

    table = builtin_table()
    if info.kernel_responses:
        try:
            table.update(responses_from_json(info.kernel_responses))
        except ValueError as exc:
            raise ModelError(f"{info.path}: invalid kernel responses ({exc})") from None
    try:
        transfers = transfers_from_json(info.kernel_transfers)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{info.path}: invalid kernel transfers ({exc})") from None
    # learnt windows (unpaired training) start from the identity: only their ratios mean
    # anything, so they do not describe the kernels a series' fingerprint is checked against
    learnt = any("learn" in str(r.get("source", "")).lower() for r in info.kernel_responses)
    return KernelTable(table, transfers, label=f"model {info.model_id}"
                       if info.kernel_responses or transfers else "built-in",
                       descriptive=not learnt)


def base_filter_for(info: ModelInfo) -> FilterEngine | None:
    """The classical filter a filter_residual model corrects (None for other variants): the
    kernel responses stored in the model file, else the built-in response table."""
    from kernelconv.engines.filter_engine import FilterEngine
    from kernelconv.errors import ModelError

    if info.arch_args.get("output") != "filter_residual":
        return None
    table = model_kernel_table(info)
    missing = [d for d in info.domains if d not in table]
    if missing:
        raise ModelError(f"{info.path}: no kernel response for {', '.join(missing)} (its base "
                         "filter needs one per domain)")
    return FilterEngine(table.subset(info.domains), noise_limit=False)
