"""Finding series pairs: two reconstructions of the same scan with different kernels.

Two series pair when their kernels differ, their image geometry is the same (rows, columns,
pixel spacing, orientation, in-plane origin), they come from the same acquisition, and they
share slice positions; the slices pair by position along the slice normal. "Same acquisition"
is the same Study and Frame of Reference UIDs when both are present and equal, else (as in
anonymised exports, which often give each series new UIDs; the shared Canon phantom's two
kernels differ in study, patient and frame-of-reference UIDs) the same acquisition date and
time, scanner serial number and kVp. Explicit pairs (``--pair SRC REF``, one series per folder)
skip the acquisition test but not the geometry and position tests: a pair of different scans
or geometries cannot be fitted, and that fails with a clear error instead of a wrong fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kernelconv.dicom.dataset import SeriesKey, read_file, series_key
from kernelconv.dicom.discovery import Series, SliceRef, discover
from kernelconv.errors import InputError

#: slice positions (mm) closer than this are the same position
POSITION_TOL_MM = 0.01


class PairingError(InputError):
    """No usable pair where one was asked for (exit code of input errors)."""


@dataclass
class SeriesPair:
    """Two series of one scan (``source`` converted towards ``reference``'s kernel) and their
    slices at common positions."""

    source: Series
    reference: Series
    slices: list[tuple[SliceRef, SliceRef]]
    pixel_mm: float
    matched_by: str

    @property
    def kernels(self) -> tuple[str, str]:
        return str(self.source.kernel), str(self.reference.kernel)

    def describe(self) -> str:
        return (f"{self.source.kernel} ({self.source.folder}) <-> {self.reference.kernel} "
                f"({self.reference.folder}): {len(self.slices)} slice(s), {self.matched_by}")


def _same_acquisition(a: SeriesKey, b: SeriesKey) -> str | None:
    """How two series are known to be one scan, or None."""
    if all(a.study_frame) and a.study_frame == b.study_frame:
        return "same study and frame of reference"
    if a.acquisition[0] and a.acquisition[1] and a.acquisition == b.acquisition:
        return "same acquisition date/time, scanner and kVp (UIDs differ)"
    return None


def common_slices(a: Series, b: Series) -> list[tuple[SliceRef, SliceRef]]:
    """Slices of ``a`` and ``b`` at the same position along the normal (single-frame only)."""
    by_pos = [(s.position, s) for s in b.slices if s.position is not None]
    out = []
    for s in a.slices:
        if s.position is None:
            continue
        match = [t for p, t in by_pos if abs(p - s.position) <= POSITION_TOL_MM]
        if match:
            out.append((s, match[0]))
    return out


def _usable(series: Series) -> bool:
    return series.error is None and not series.multiframe and bool(series.kernel)


def _pair(a: Series, b: Series, ka: SeriesKey, matched_by: str) -> SeriesPair | None:
    slices = common_slices(a, b)
    if not slices:
        return None
    pixel = float(ka.geometry[2])  # type: ignore[arg-type]
    return SeriesPair(a, b, slices, pixel, matched_by)


def _order(a: Series, b: Series, sharpness: dict[str, float]) -> tuple[Series, Series]:
    """Sharper kernel first when known (source sharp, reference soft), else by kernel name."""
    sa, sb = sharpness.get(str(a.kernel)), sharpness.get(str(b.kernel))
    if sa is not None and sb is not None and sa != sb:
        return (a, b) if sa > sb else (b, a)
    return (a, b) if str(a.kernel) <= str(b.kernel) else (b, a)


def find_pairs(root: Path, sharpness: dict[str, float] | None = None
               ) -> tuple[list[SeriesPair], list[str]]:
    """Every pair of series under ``root`` (module docstring), and notes on what did not pair."""
    found = discover(root)
    notes = [f"{s.path}: {s.reason}" for s in found.skipped]
    usable = []
    for series in found.series:
        if not _usable(series):
            why = series.error or "multi-frame, or no ConvolutionKernel"
            notes.append(f"{series.label()}: not used ({why})")
            continue
        usable.append((series, series_key(read_file(series.slices[0].path, header_only=True))))
    pairs: list[SeriesPair] = []
    paired: set[str] = set()
    for i, (a, ka) in enumerate(usable):
        for b, kb in usable[i + 1:]:
            if a.kernel == b.kernel or ka.geometry != kb.geometry:
                continue
            how = _same_acquisition(ka, kb)
            if how is None:
                continue
            first, second = _order(a, b, sharpness or {})
            pair = _pair(first, second, ka, how)
            if pair is not None:
                pairs.append(pair)
                paired.update((a.series_uid, b.series_uid))
    for series, _ in usable:
        if series.series_uid not in paired:
            notes.append(f"{series.label()} ({series.kernel}): no reconstruction of the "
                         "same scan with another kernel found")
    return pairs, notes


def _single_series(folder: Path) -> Series:
    found = discover(folder)
    usable = [s for s in found.series if _usable(s)]
    if len(usable) != 1:
        raise PairingError(f"{folder}: --pair needs exactly one single-frame CT series with a "
                           f"ConvolutionKernel per folder, found {len(usable)}")
    return usable[0]


def explicit_pair(source_dir: Path, reference_dir: Path) -> SeriesPair:
    """The pair given as two folders (module docstring)."""
    a, b = _single_series(source_dir), _single_series(reference_dir)
    ka = series_key(read_file(a.slices[0].path, header_only=True))
    kb = series_key(read_file(b.slices[0].path, header_only=True))
    if ka.geometry != kb.geometry:
        raise PairingError(f"--pair {source_dir} {reference_dir}: the two series differ in "
                           "image geometry (size, pixel spacing, orientation or origin)")
    if a.kernel == b.kernel:
        raise PairingError(f"--pair {source_dir} {reference_dir}: both series have kernel "
                           f"{a.kernel}")
    pair = _pair(a, b, ka, "given with --pair")
    if pair is None:
        raise PairingError(f"--pair {source_dir} {reference_dir}: no slice positions in common")
    return pair
