"""Batched HU -> HU converters behind one small interface. No DICOM here."""

from __future__ import annotations

from typing import Protocol

import numpy as np


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
