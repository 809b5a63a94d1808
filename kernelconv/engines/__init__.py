"""Batched HU -> HU converters behind one small interface. No DICOM here.

:func:`kernelconv.engines.select.select_engine` is how a command gets one: it resolves the
model (or the filter) once and returns a lazy factory with the domains and model metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from kernelconv.kernel_response import REFERENCE_PIXEL_MM

if TYPE_CHECKING:
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

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = REFERENCE_PIXEL_MM) -> np.ndarray:
        """(B, H, W) float32 HU in ``source`` kernel -> (B, H, W) float32 HU in ``target``.

        ``pixel_mm`` is the pixel spacing; engines whose response is defined in lp/cm (the
        filter) need it, the network ignores it (it was trained at one pixel size).
        """
        ...


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
        self.domains = tuple(info.domains)
        self.domain_sharpness = domain_sharpness(self.domains, info.domain_sharpness)
        # another backend's results differ by a fraction of an HU: its derived UIDs must too
        self.method_id = f"{info.model_id}+{backend}" if backend else info.model_id
        self.description = f"GGCL StarGAN generator, model {info.model_id}" + (
            " (ONNX Runtime)" if backend == "onnx" else "")

    def forward(self, unit: np.ndarray, target: int) -> np.ndarray:
        """(B, 1, H, W) network input -> (B, 1, H, W) output in [-1, 1], as numpy."""
        raise NotImplementedError

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = REFERENCE_PIXEL_MM) -> np.ndarray:
        """Convert (B, H, W) HU; any H and W (reflect-padded to the network's multiple)."""
        from kernelconv.errors import KernelconvError
        from kernelconv.hu import network_input, unit_to_hu

        if target not in self.domains:
            raise KernelconvError(f"target kernel {target} is not one of {self.domains}")
        lo, hi = self.info.hu_range
        unit, (rows, cols) = network_input(hu, lo, hi, self.multiple)
        out = self.forward(unit, self.domains.index(target))
        return unit_to_hu(out[:, 0, rows, cols], lo, hi)
