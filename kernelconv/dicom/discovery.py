"""Find CT series under a folder, reading headers only, and sort their slices in space.

Files are grouped by SeriesInstanceUID (so two series interleaved in one folder separate) and
sorted by ImagePositionPatient projected on the slice normal, the cross product of the row and
column directions in ImageOrientationPatient - never by file name or InstanceNumber. Files that
cannot be used are reported with a reason, never silently dropped.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from kernelconv.dicom.dataset import (
    CT_CLASSES,
    MULTIFRAME_CT,
    frame_rescales,
    kernel_of,
    read_file,
    resolve_pixel_spacing,
)
from kernelconv.dicom.derived import DerivedBy, derivation_of
from kernelconv.errors import SeriesError

MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"

#: slice positions closer than this (mm) count as duplicates
DUPLICATE_TOL_MM = 1e-3


@dataclass
class Skipped:
    """Something found in the input that is not converted, and why."""

    path: str
    reason: str


@dataclass
class SliceRef:
    """One image file of a series, as seen from its header."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    position: float | None  # mm along the slice normal
    frames: int
    rows: int
    columns: int


@dataclass
class Series:
    """The files of one SeriesInstanceUID, sorted along the slice normal."""

    series_uid: str
    study_uid: str
    kernel: str | None
    description: str
    series_number: int | None
    multiframe: bool
    slices: list[SliceRef]
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # set when the series cannot be converted as found
    #: set when kernelconv itself derived the series (read from the first file's header)
    derived_by_kernelconv: DerivedBy | None = None

    @property
    def n_images(self) -> int:
        return sum(s.frames for s in self.slices)

    @property
    def folder(self) -> str:
        """The common parent folder of the series' files (for messages)."""
        return os.path.commonpath([str(s.path.parent) for s in self.slices])

    def label(self) -> str:
        """A short name for messages: folder and series number, never patient data."""
        num = f" #{self.series_number}" if self.series_number is not None else ""
        return f"series{num} in {self.folder}"


@dataclass
class Discovery:
    series: list[Series]
    skipped: list[Skipped]


def _walk(root: Path, exclude: list[Path]) -> Iterator[Path]:
    excl = [e.resolve() for e in exclude]
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath).resolve()
        dirnames[:] = sorted(
            d for d in dirnames
            if (here / d).resolve() not in excl and not d.startswith(".kernelconv-")
        )
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _normal(iop: Iterable[float]) -> np.ndarray:
    v = np.asarray([float(x) for x in iop], dtype=np.float64)
    if v.shape != (6,):
        raise ValueError("ImageOrientationPatient must have 6 values")
    n = np.cross(v[:3], v[3:])
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise ValueError("ImageOrientationPatient row and column directions are parallel")
    return n / norm


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


def _sort_and_check(series: Series, orientations: list[np.ndarray | None]) -> None:
    """Sort single-frame slices along the normal; report duplicates and gaps."""
    if series.multiframe:
        series.slices.sort(key=lambda s: (s.instance_number or 0, s.sop_instance_uid))
        return
    if any(o is None for o in orientations) or any(s.position is None for s in series.slices):
        series.error = ("missing or invalid ImagePositionPatient/ImageOrientationPatient; "
                        "cannot order the slices in space")
        return
    ref = orientations[0]
    assert ref is not None
    if any(float(np.dot(ref, o)) < 0.9999 for o in orientations if o is not None):
        series.error = "slices have different orientations (ImageOrientationPatient differs)"
        return
    series.slices.sort(key=lambda s: (s.position, s.instance_number or 0, s.sop_instance_uid))
    pos = np.array([s.position for s in series.slices], dtype=np.float64)
    if len(pos) < 2:
        return
    diffs = np.diff(pos)
    dup = int(np.sum(diffs < DUPLICATE_TOL_MM))
    if dup:
        series.warnings.append(f"{dup} duplicate slice position(s)")
    steps = diffs[diffs >= DUPLICATE_TOL_MM]
    if len(steps):
        spacing = float(np.median(steps))
        for i in np.nonzero(diffs > 1.5 * spacing + 1e-3)[0]:
            series.warnings.append(
                f"gap of {diffs[i]:.2f} mm between slice positions {pos[i]:.2f} and "
                f"{pos[i + 1]:.2f} (spacing {spacing:.2f} mm)"
            )


def _check_spacing(series: Series, headers: list[Dataset]) -> None:
    """Non-square or invalid pixel spacing makes the series an error; a spacing that had to
    be assumed is a warning (once per distinct reason)."""
    assumed: dict[str, None] = {}
    for ds in headers:
        try:
            spacing = resolve_pixel_spacing(ds)
        except SeriesError as exc:
            series.error = series.error or str(exc)
            return
        if spacing.assumed:
            assumed[spacing.assumed] = None
    series.warnings.extend(assumed)


def discover(root: Path, exclude: list[Path] | None = None) -> Discovery:
    """Walk ``root`` recursively and return its CT series (sorted) and everything skipped."""
    skipped: list[Skipped] = []
    groups: dict[str, list[tuple[SliceRef, Dataset, np.ndarray | None]]] = defaultdict(list)
    non_ct: dict[tuple[str, str], int] = defaultdict(int)
    seen_sop: dict[str, Path] = {}
    for path in _walk(root, exclude or []):
        if path.is_symlink() and not path.exists():
            skipped.append(Skipped(str(path), "broken symbolic link"))
            continue
        try:
            if path.stat().st_size == 0:
                skipped.append(Skipped(str(path), "empty file"))
                continue
            ds = read_file(path, header_only=True)
        except InvalidDicomError:
            skipped.append(Skipped(str(path), "not a DICOM file"))
            continue
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt input
            skipped.append(Skipped(str(path), f"unreadable DICOM file ({type(exc).__name__})"))
            continue
        sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
        if sop_class == MEDIA_DIRECTORY or "DirectoryRecordSequence" in ds:
            skipped.append(Skipped(str(path), "DICOMDIR (media directory), not an image"))
            continue
        if sop_class not in CT_CLASSES:
            name = UID(sop_class).name if sop_class else "no SOP Class UID"
            non_ct[(str(ds.get("SeriesInstanceUID", "?")), name)] += 1
            continue
        image_type = [str(v).strip().upper() for v in (ds.get("ImageType") or [])]
        if len(image_type) > 2 and image_type[2] == "LOCALIZER":
            skipped.append(Skipped(str(path), "CT localizer (topogram), not an axial image"))
            continue
        try:
            frame_rescales(ds)
        except SeriesError as exc:  # e.g. a perfusion map (RescaleType US): nothing to convert
            skipped.append(Skipped(str(path), f"not convertible: {exc}"))
            continue
        series_uid = str(ds.get("SeriesInstanceUID", "")).strip()
        sop_uid = str(ds.get("SOPInstanceUID", "")).strip()
        if not series_uid or not sop_uid:
            skipped.append(Skipped(str(path), "no SeriesInstanceUID or SOPInstanceUID"))
            continue
        if sop_uid in seen_sop:
            skipped.append(Skipped(str(path), f"same SOPInstanceUID as {seen_sop[sop_uid]}"))
            continue
        seen_sop[sop_uid] = path
        orientation: np.ndarray | None = None
        position: float | None = None
        try:
            if "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds:
                orientation = _normal(ds.ImageOrientationPatient)
                ipp = np.asarray([float(x) for x in ds.ImagePositionPatient], dtype=np.float64)
                if ipp.shape == (3,):
                    position = float(np.dot(ipp, orientation))
        except (ValueError, TypeError):
            orientation, position = None, None
        ref = SliceRef(
            path=path, sop_instance_uid=sop_uid, sop_class_uid=sop_class,
            instance_number=_int_or_none(ds.get("InstanceNumber")), position=position,
            frames=_int_or_none(ds.get("NumberOfFrames")) or 1,
            rows=_int_or_none(ds.get("Rows")) or 0, columns=_int_or_none(ds.get("Columns")) or 0,
        )
        groups[series_uid].append((ref, ds, orientation))
    for (uid, name), count in sorted(non_ct.items()):
        skipped.append(Skipped(f"series {uid}", f"not CT ({name}, {count} file(s))"))

    series_list: list[Series] = []
    for uid, members in groups.items():
        first = members[0][1]
        multiframe = any(m[0].sop_class_uid in MULTIFRAME_CT for m in members)
        series = Series(
            series_uid=uid, study_uid=str(first.get("StudyInstanceUID", "")),
            kernel=kernel_of(first), description=str(first.get("SeriesDescription", "") or ""),
            series_number=_int_or_none(first.get("SeriesNumber")), multiframe=multiframe,
            slices=[m[0] for m in members], derived_by_kernelconv=derivation_of(first),
        )
        if multiframe and len({m[0].sop_class_uid for m in members}) > 1:
            series.error = "series mixes single-frame and multi-frame CT images"
        else:
            _sort_and_check(series, [m[2] for m in members])
        kernels = {kernel_of(m[1]) for m in members}
        if len(kernels) > 1:
            series.error = (f"series mixes kernels {', '.join(sorted(str(k) for k in kernels))}")
        _check_spacing(series, [m[1] for m in members])
        series_list.append(series)
    series_list.sort(key=lambda s: (s.study_uid, s.series_number or 0, s.series_uid))
    return Discovery(series_list, skipped)
