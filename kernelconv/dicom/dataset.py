"""Reading what a CT dataset holds: its kernel, rescale per frame, and pixels in HU."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from kernelconv.errors import PixelDataError, SeriesError
from kernelconv.hu import stored_to_hu
from kernelconv.kernels import first_kernel_value

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.2"
MULTIFRAME_CT = {ENHANCED_CT_IMAGE, LEGACY_ENHANCED_CT_IMAGE}
CT_CLASSES = {CT_IMAGE} | MULTIFRAME_CT

#: values longer than this (bytes) are not loaded by a header read (the pixel data)
HEADER_DEFER_SIZE = 1024
UNDEFINED_LENGTH = 0xFFFFFFFF


def _functional_items(ds: Dataset, keyword: str) -> Iterator[Dataset]:
    """Items of functional group ``keyword`` in the shared, then the per-frame groups."""
    for group_seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in ds.get(group_seq) or []:
            yield from group.get(keyword) or []


def kernel_of(ds: Dataset) -> str | None:
    """ConvolutionKernel (first value); for Enhanced CT, from the CT Reconstruction group."""
    kernel = first_kernel_value(ds.get("ConvolutionKernel"))
    if kernel is None:
        for item in _functional_items(ds, "CTReconstructionSequence"):
            kernel = first_kernel_value(item.get("ConvolutionKernel"))
            if kernel:
                break
    return kernel


def _spacing_values(ds: Dataset) -> object:
    values = ds.get("PixelSpacing")
    if not values:
        for item in _functional_items(ds, "PixelMeasuresSequence"):
            values = item.get("PixelSpacing")
            if values:
                break
    return values


def pixel_spacing_mm(ds: Dataset) -> float | None:
    """Row pixel spacing (mm): PixelSpacing, or the Pixel Measures functional group. Raw; the
    conversion resolves spacing with :func:`resolve_pixel_spacing`."""
    values = _spacing_values(ds)
    try:
        return float(values[0]) if values else None  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None


#: row and column spacing may differ by this fraction and still count as square pixels
SQUARE_TOLERANCE = 0.01


@dataclass(frozen=True)
class PixelSpacing:
    """The pixel size a conversion works with, and why, when the header did not give it."""

    mm: float
    assumed: str | None = None  # a warning for the report; None when the header gave it


def resolve_pixel_spacing(ds: Dataset) -> PixelSpacing:
    """The (square) pixel size of a CT image: the one place that decides it for a conversion.

    PixelSpacing (or the Pixel Measures functional group) gives row and column spacing; they
    must agree within ``SQUARE_TOLERANCE`` (the kernel filters and the HU check work in
    physical frequency on square pixels): SeriesError for non-square pixels or an invalid
    value. Without PixelSpacing the size is ReconstructionDiameter / Columns, else the
    reference 0.684 mm (350 mm on 512 columns), with a warning saying so.
    """
    from kernelconv.kernel_response import REFERENCE_PIXEL_MM

    values = _spacing_values(ds)
    if values:
        try:
            row, col = (float(v) for v in list(values)[:2])  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise SeriesError(f"invalid PixelSpacing {values!r}") from None
        if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
            raise SeriesError(f"invalid PixelSpacing {row:g}\\{col:g}")
        if abs(row - col) > SQUARE_TOLERANCE * max(row, col):
            raise SeriesError(
                f"non-square pixels ({row:g} x {col:g} mm): not supported, the kernel "
                "filters and the HU check work in physical frequency on square pixels")
        return PixelSpacing(0.5 * (row + col))
    try:
        diameter = float(ds.get("ReconstructionDiameter") or 0.0)
        columns = int(ds.get("Columns") or 0)
    except (TypeError, ValueError):
        diameter, columns = 0.0, 0
    if diameter > 0 and columns > 0:
        mm = diameter / columns
        return PixelSpacing(mm, f"no PixelSpacing: {mm:.3f} mm assumed from "
                                f"ReconstructionDiameter {diameter:g} mm / {columns} columns")
    return PixelSpacing(REFERENCE_PIXEL_MM,
                        f"no PixelSpacing: {REFERENCE_PIXEL_MM:.3f} mm assumed (350 mm field "
                        "of view on 512 columns); the kernel filter and the HU check are only "
                        "as right as this")


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def frame_rescales(ds: Dataset) -> list[tuple[float, float]]:
    """(slope, intercept) of each frame; classic images have one frame.

    Enhanced CT keeps them in the Pixel Value Transformation functional group (shared or per
    frame). Raises SeriesError when the values are missing or are not HU.
    """
    n = frame_count(ds)
    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
        items = [ds]
    else:
        shared = list(_shared_items(ds, "PixelValueTransformationSequence"))
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        items = []
        for i in range(n):
            frame_items = (
                list(per_frame[i].get("PixelValueTransformationSequence") or [])
                if i < len(per_frame) else []
            )
            src = frame_items or shared or [ds]
            items.append(src[0])
    out = []
    for item in items:
        rtype = str(item.get("RescaleType", "HU") or "HU").strip().upper()
        if rtype not in ("HU", ""):
            raise SeriesError(f"pixel values are not Hounsfield units (RescaleType {rtype})")
        try:
            slope = float(item.get("RescaleSlope", 1.0))
            intercept = float(item.get("RescaleIntercept", 0.0))
        except (TypeError, ValueError):
            raise SeriesError("invalid RescaleSlope/RescaleIntercept") from None
        if slope == 0.0:
            raise SeriesError("RescaleSlope is 0")
        out.append((slope, intercept))
    if len(items) == 1 and n > 1:
        out = out * n
    return out


def _shared_items(ds: Dataset, keyword: str) -> Iterator[Dataset]:
    for group in ds.get("SharedFunctionalGroupsSequence") or []:
        yield from group.get(keyword) or []


def read_file(path: Path, *, header_only: bool = False) -> Dataset:
    """Read a DICOM file: the one reader of input files, for headers and for whole files.

    A Part-10 file (preamble, "DICM", file meta) is read as it is, in any transfer syntax,
    Explicit VR Big Endian included. A file without preamble, prefix or file meta (a bare
    dataset, the shape of ACR-NEMA-style exports) is read with ``force=True`` only after the
    plain read fails for that reason, and is accepted only when it holds a CT image
    (:func:`_is_ct_image`): a forced read of arbitrary bytes often "succeeds" with a handful
    of garbage elements, and such a file must never become a series.

    ``header_only`` defers values longer than :data:`HEADER_DEFER_SIZE` (the pixel data).
    Raises InvalidDicomError("not a DICOM file") for a file that is neither; a corrupt
    Part-10 file raises whatever pydicom raises.
    """
    defer = HEADER_DEFER_SIZE if header_only else None
    try:
        return pydicom.dcmread(path, defer_size=defer)
    except InvalidDicomError:
        pass  # no preamble/"DICM" (or no usable file meta): maybe a bare dataset
    try:
        ds = pydicom.dcmread(path, defer_size=defer, force=True)
        accepted = _is_ct_image(ds, path)
    except Exception:  # noqa: BLE001 - parsing arbitrary bytes raises many types
        accepted = False
    if not accepted:
        raise InvalidDicomError("not a DICOM file")
    if "TransferSyntaxUID" not in ds.file_meta:
        # no file meta: name the encoding pydicom found, which decoding the pixels needs
        ds.file_meta.TransferSyntaxUID = _syntax_of(*ds.original_encoding)
    return ds


def _syntax_of(implicit_vr: bool | None, little_endian: bool | None) -> UID:
    if implicit_vr:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian


def _is_ct_image(ds: Dataset, path: Path) -> bool:
    """Whether a forced read found a whole CT image: a CT SOP class, a SOP instance UID, a
    positive matrix size, the geometry (per frame for multi-frame CT), and pixel data that is
    all there (a file cut short must not pass for an image)."""
    if str(ds.get("SOPClassUID", "")).strip() not in CT_CLASSES:
        return False
    if not str(ds.get("SOPInstanceUID", "")).strip() or "PixelData" not in ds:
        return False
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows <= 0 or columns <= 0:
        return False
    if "PerFrameFunctionalGroupsSequence" not in ds and not (
        "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
    ):
        return False
    pixels = ds.get_item("PixelData", keep_deferred=True)  # a deferred value stays unread
    if isinstance(pixels, RawDataElement):
        if pixels.length == UNDEFINED_LENGTH:
            return True  # encapsulated (compressed) frames: decoding checks them
        declared = pixels.length
        present = (path.stat().st_size - pixels.value_tell if pixels.value is None
                   else len(pixels.value))
    else:
        declared = present = len(pixels.value or b"")
    size = frame_count(ds) * rows * columns * int(ds.get("SamplesPerPixel") or 1) * (
        int(ds.get("BitsAllocated") or 16) // 8)
    return declared >= size and present >= declared


def read_dataset(path: Path) -> Dataset:
    """Read a whole file (pixels included) for conversion; PixelDataError naming the file."""
    try:
        return read_file(path)
    except InvalidDicomError as exc:
        raise PixelDataError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files raise many types
        raise PixelDataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None


def decode_stored(ds: Dataset, path: Path) -> np.ndarray:
    """Stored pixel values as (frames, rows, columns); PixelDataError naming the file if not."""
    if "PixelData" not in ds:
        raise PixelDataError(f"{path}: no Pixel Data")
    if int(ds.get("SamplesPerPixel", 1)) != 1 or not str(
        ds.get("PhotometricInterpretation", "")
    ).startswith("MONOCHROME"):
        raise PixelDataError(f"{path}: not a greyscale (MONOCHROME) image")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoders raise many types
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PixelDataError(f"{path}: cannot decode pixel data ({msg})") from None
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] != frame_count(ds):
        raise PixelDataError(f"{path}: unexpected pixel array shape {arr.shape}")
    return arr


def decode_hu(ds: Dataset, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(stored, HU) arrays of shape (frames, rows, columns); HU as float32."""
    stored = decode_stored(ds, path)
    rescales = frame_rescales(ds)
    hu = np.empty(stored.shape, dtype=np.float32)
    for i, (slope, intercept) in enumerate(rescales):
        hu[i] = stored_to_hu(stored[i], slope, intercept)
    return stored, hu


def read_hu_slices(paths: list[Path]) -> tuple[list[np.ndarray], Dataset]:
    """The HU image of each single-frame file, and the first file's dataset (for headers)."""
    if not paths:
        raise PixelDataError("no files to read")
    images, first = [], None
    for path in paths:
        ds = read_dataset(path)
        first = first or ds
        images.append(decode_hu(ds, path)[1][0])
    assert first is not None
    return images, first


@dataclass(frozen=True)
class SeriesKey:
    """What two reconstructions of one scan share: image geometry, study and frame of
    reference, and the acquisition (date, time, scanner serial, kVp), which anonymised
    exports keep when they renew the UIDs (kernelconv.calibration.pairs)."""

    geometry: tuple[object, ...]
    study_frame: tuple[str, str]
    acquisition: tuple[str, str, str, str]


def _round(values: object, digits: int) -> tuple[float, ...]:
    return tuple(round(float(v), digits) for v in values)  # type: ignore[attr-defined]


def series_key(ds: Dataset) -> SeriesKey:
    ipp = ds.get("ImagePositionPatient") or [0.0, 0.0, 0.0]
    geometry = (int(ds.get("Rows", 0)), int(ds.get("Columns", 0)),
                round(pixel_spacing_mm(ds) or 0.0, 4),
                _round(ds.get("ImageOrientationPatient") or [], 4), _round(list(ipp)[:2], 2))
    return SeriesKey(
        geometry,
        (str(ds.get("StudyInstanceUID", "")), str(ds.get("FrameOfReferenceUID", ""))),
        (str(ds.get("AcquisitionDate", "")), str(ds.get("AcquisitionTime", "")),
         str(ds.get("DeviceSerialNumber", "")), str(ds.get("KVP", ""))),
    )




def scan_key(ds: Dataset) -> str:
    """One string per scan and image geometry: the reconstructions of one acquisition share
    it even where anonymisation gave them different Study UIDs (acquisition date/time,
    scanner, kVp; else the Study UID)."""
    key = series_key(ds)
    ident = ("acq:" + "|".join(key.acquisition) if key.acquisition[0] and key.acquisition[1]
             else "study:" + key.study_frame[0])
    return f"{ident}|{key.geometry!r}"
