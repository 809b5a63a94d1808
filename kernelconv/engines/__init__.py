"""Batched HU -> HU converters behind one small interface. No DICOM here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

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
                pixel_mm: float = 0.68359375) -> np.ndarray:
        """(B, H, W) float32 HU in ``source`` kernel -> (B, H, W) float32 HU in ``target``.

        ``pixel_mm`` is the pixel spacing; engines whose response is defined in lp/cm (the
        filter) need it, the network ignores it (it was trained at one pixel size).
        """
        ...


def pad_amounts(size: int, multiple: int) -> tuple[int, int]:
    """(before, after) padding that makes ``size`` a multiple of ``multiple``, centred."""
    total = (-size) % multiple
    return total // 2, total - total // 2


def network_input(hu: np.ndarray, lo: float, hi: float,
                  multiple: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """(B, H, W) HU -> the network's (B, 1, H', W') float32 input in [-1, 1] and the window
    that crops its output back to H x W.

    The paper's normalisation (clip to [lo, hi], scale to [-1, 1]); H and W are reflect-padded
    (centred) to the network's size multiple, never resized; replicate-padded when the image is
    too small to reflect.
    """
    from kernelconv.hu import hu_to_unit

    _, h, w = hu.shape
    (pt, pb), (pl, pr) = pad_amounts(h, multiple), pad_amounts(w, multiple)
    unit = hu_to_unit(hu, lo, hi)[:, None]
    if pt or pb or pl or pr:
        widths = ((0, 0), (0, 0), (pt, pb), (pl, pr))
        if min(h, w) > max(pt, pb, pl, pr):
            unit = np.pad(unit, widths, mode="reflect")
        else:
            unit = np.pad(unit, widths, mode="edge")
    return np.ascontiguousarray(unit, dtype=np.float32), (slice(pt, pt + h), slice(pl, pl + w))


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
        from kernelconv.kernels import BUILTIN_SHARPNESS

        self.info = info
        self.multiple = multiple
        self.domains = tuple(info.domains)
        self.domain_sharpness = {
            d: info.domain_sharpness.get(d, BUILTIN_SHARPNESS.get(d, float(i)))
            for i, d in enumerate(self.domains)
        }
        # another backend's results differ by a fraction of an HU: its derived UIDs must too
        self.method_id = f"{info.model_id}+{backend}" if backend else info.model_id
        self.description = f"GGCL StarGAN generator, model {info.model_id}" + (
            " (ONNX Runtime)" if backend == "onnx" else "")

    def forward(self, unit: np.ndarray, target: int) -> np.ndarray:
        """(B, 1, H, W) network input -> (B, 1, H, W) output in [-1, 1], as numpy."""
        raise NotImplementedError

    def convert(self, hu: np.ndarray, source: str, target: str,
                pixel_mm: float = 0.68359375) -> np.ndarray:
        """Convert (B, H, W) HU; any H and W (reflect-padded to the network's multiple)."""
        from kernelconv.errors import KernelconvError
        from kernelconv.hu import unit_to_hu

        if target not in self.domains:
            raise KernelconvError(f"target kernel {target} is not one of {self.domains}")
        lo, hi = self.info.hu_range
        unit, (rows, cols) = network_input(hu, lo, hi, self.multiple)
        out = self.forward(unit, self.domains.index(target))
        return unit_to_hu(out[:, 0, rows, cols], lo, hi)
