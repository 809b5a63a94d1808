"""Stored values <-> Hounsfield units <-> the network's [-1, 1] range. Pure functions.

The paper (Choi et al. 2023, "Implementation Details") clips HU to [-1024, 3071] and maps that
interval linearly onto [-1, 1]; :func:`hu_to_unit` and :func:`unit_to_hu` are exactly that map.
:func:`network_input` adds the padding to the network's size multiple. This module is the one
owner of both: conversion, training and validation all call it, so validation scores exactly
the inputs that `convert` produces.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

HU_MIN: float = -1024.0
HU_MAX: float = 3071.0

FloatArray = npt.NDArray[np.float32]


def stored_to_hu(stored: npt.NDArray[np.generic], slope: float, intercept: float) -> FloatArray:
    """HU = stored * slope + intercept, as float32 (computed in float64 for exactness)."""
    return (stored.astype(np.float64) * float(slope) + float(intercept)).astype(np.float32)


def hu_to_unit(
    hu: npt.NDArray[np.floating], hu_min: float = HU_MIN, hu_max: float = HU_MAX
) -> FloatArray:
    """Clip HU to [hu_min, hu_max] and map linearly onto [-1, 1]."""
    clipped = np.clip(hu.astype(np.float32), hu_min, hu_max)
    return ((clipped - hu_min) * (2.0 / (hu_max - hu_min)) - 1.0).astype(np.float32)


def unit_to_hu(
    unit: npt.NDArray[np.floating], hu_min: float = HU_MIN, hu_max: float = HU_MAX,
    clip: bool = True,
) -> FloatArray:
    """Inverse of :func:`hu_to_unit` on [-1, 1] (values outside are clipped first, unless
    ``clip`` is False: a residual generator's output may leave the window before the file's
    encoding clips it, and the HU check looks at it unclipped)."""
    u = unit.astype(np.float32)
    if clip:
        u = np.clip(u, -1.0, 1.0)
    return ((u + 1.0) * ((hu_max - hu_min) / 2.0) + hu_min).astype(np.float32)


#: 0 HU on the network's [-1, 1] scale (where a filter with H(0) != 1 must be centred)
UNIT_ZERO_HU: float = float(-1.0 - 2.0 * HU_MIN / (HU_MAX - HU_MIN))


def stored_range(bits_stored: int, signed: bool) -> tuple[int, int]:
    """The smallest and largest stored value that ``bits_stored`` bits can hold."""
    if signed:
        return -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return 0, (1 << bits_stored) - 1


def hu_to_stored(
    hu: npt.NDArray[np.floating],
    slope: float,
    intercept: float,
    bits_stored: int,
    signed: bool,
) -> npt.NDArray[np.integer]:
    """stored = round((HU - intercept) / slope), clipped to what the encoding holds.

    Rounds half to even (numpy's ``rint``), never truncates. Returns int16 when ``signed``,
    else uint16.
    """
    lo, hi = stored_range(bits_stored, signed)
    stored = np.rint((hu.astype(np.float64) - float(intercept)) / float(slope))
    stored = np.clip(stored, lo, hi)
    return stored.astype(np.int16 if signed else np.uint16)


def encoding_holds(
    slope: float, intercept: float, bits_stored: int, signed: bool,
    hu_min: float = HU_MIN, hu_max: float = HU_MAX,
) -> bool:
    """Whether stored values of this encoding can represent every HU in [hu_min, hu_max]."""
    lo, hi = stored_range(bits_stored, signed)
    a, b = lo * slope + intercept, hi * slope + intercept
    return min(a, b) <= hu_min and max(a, b) >= hu_max


def pad_amounts(size: int, multiple: int) -> tuple[int, int]:
    """(before, after) padding that makes ``size`` a multiple of ``multiple``, centred."""
    total = (-size) % multiple
    return total // 2, total - total // 2


def network_input(hu: npt.NDArray[np.floating], hu_min: float, hu_max: float,
                  multiple: int) -> tuple[FloatArray, tuple[slice, slice]]:
    """(B, H, W) HU -> the network's (B, 1, H', W') float32 input in [-1, 1] and the window
    that crops its output back to H x W.

    The paper's normalisation (clip to [hu_min, hu_max], scale to [-1, 1]); H and W are
    reflect-padded (centred) to the network's size multiple, never resized; replicate-padded
    when the image is too small to reflect.
    """
    _, h, w = hu.shape
    (pt, pb), (pl, pr) = pad_amounts(h, multiple), pad_amounts(w, multiple)
    unit = hu_to_unit(hu, hu_min, hu_max)[:, None]
    if pt or pb or pl or pr:
        widths = ((0, 0), (0, 0), (pt, pb), (pl, pr))
        if min(h, w) > max(pt, pb, pl, pr):
            unit = np.pad(unit, widths, mode="reflect")
        else:
            unit = np.pad(unit, widths, mode="edge")
    return np.ascontiguousarray(unit, dtype=np.float32), (slice(pt, pt + h), slice(pl, pl + w))
