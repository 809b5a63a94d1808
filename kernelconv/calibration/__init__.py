"""`kernelconv calibrate`: fit the conversion to a site's own scanner from paired
reconstructions of the same scans (docs/calibration.md).

:mod:`.pairs` finds the pairs, :mod:`.fit` fits each kernel pair's transfer in lp/cm and
measures both kernels' noise, :mod:`.table` turns the fits into a kernel table that
``convert --method filter --kernel-table`` and ``simulate --kernel-table`` read, and
:mod:`.report` draws and tabulates it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kernelconv.calibration.pairs import PairingError, SeriesPair, explicit_pair, find_pairs
from kernelconv.calibration.table import Calibration, build_table, fit_pairs
from kernelconv.kernel_response import domain_sharpness, load_response_table

__all__ = ["Calibration", "PairingError", "SeriesPair", "calibrate", "collect_pairs"]


def collect_pairs(roots: list[Path], explicit: list[tuple[Path, Path]]
                  ) -> tuple[list[SeriesPair], list[str]]:
    """The pairs found under ``roots`` plus the ``explicit`` (source, reference) folders."""
    table = load_response_table()
    sharpness = domain_sharpness(table, table=table)
    pairs: list[SeriesPair] = []
    notes: list[str] = []
    for root in roots:
        if not root.is_dir():
            raise PairingError(f"{root}: not a folder")
        found, why = find_pairs(root, sharpness)
        pairs += found
        notes += why
    pairs += [explicit_pair(src, ref) for src, ref in explicit]
    if not pairs:
        raise PairingError("no pair of series of the same scan with different kernels found"
                           + (f" ({len(notes)} note(s): {notes[0]}{' ...' if len(notes) > 1 else ''})"
                              if notes else ""))
    return pairs, notes


def calibrate(pairs: list[SeriesPair], progress: Callable[[], None] | None = None
              ) -> Calibration:
    """Fit every kernel pair and build the site's kernel table."""
    fits, noise, counts = fit_pairs(pairs, progress=progress)
    return build_table(pairs, fits, noise, counts)
