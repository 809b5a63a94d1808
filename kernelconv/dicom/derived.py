"""Assemble the derived (kernel-converted) dataset from a source dataset and new HU pixels.

Every attribute written or changed here is listed, with its reason, in docs/dicom.md. UIDs are
deterministic functions of the source UID and the derivation's key (:attr:`Derivation.key`:
source and target kernel and domain, engine and model id, kernel table content, precision,
series number offset), so a rerun writes the same files byte for byte, and two conversions
that differ in anything that changes the written images never share a UID. The key is written
into every file (Contributing Equipment), so an existing output can be read back and compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from kernelconv import __version__
from kernelconv.dicom.dataset import frame_rescales
from kernelconv.errors import SeriesError
from kernelconv.hu import HU_MAX, HU_MIN, encoding_holds, hu_to_stored

#: the ImplementationClassUID of files kernelconv writes (constant, deterministic)
IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["kernelconv implementation class"])
IMPLEMENTATION_VERSION_NAME = ("KERNELCONV_" + __version__.replace(".", "_"))[:16]

SMOOTHING = ("113087", "DCM", "Smoothing")
EDGE_ENHANCEMENT = ("113086", "DCM", "Edge enhancement")
SOURCE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")
PROCESSING_EQUIPMENT = ("109102", "DCM", "Processing Equipment")

#: transfer syntaxes whose compression is lossy by definition (JPEG baseline/extended)
LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
}


@dataclass(frozen=True)
class Derivation:
    """What was done to a series, for the derived headers and UIDs."""

    source_kernel: str  # as the source series is labelled (header, or --from)
    target_kernel: str  # as asked for (--to): written to ConvolutionKernel
    method: str  # human-readable, e.g. "GGCL generator model X" or "MTF-ratio filter"
    method_id: str  # stable id of the engine (model id, backend, precision; or filter id)
    smoothing: bool  # True: sharp -> soft (Smoothing); False: soft -> sharp (Edge enhancement)
    series_number_offset: int = 1000
    #: the engine's kernels the conversion ran between (the same as the labels unless a
    #: kernel map or an alias named them otherwise)
    source_domain: str = ""
    target_domain: str = ""
    #: hash of the kernel table entries the conversion used (KernelTable.digest)
    table_digest: str = ""

    @property
    def suffix(self) -> str:
        return f" [{self.target_kernel} kernelconv]"

    @property
    def key(self) -> str:
        """16 hex digits naming everything that shapes the written images: two derivations
        with equal keys write the same files from the same source."""
        import hashlib

        parts = (KEY_VERSION, self.source_kernel, self.source_domain or self.source_kernel,
                 self.target_kernel, self.target_domain or self.target_kernel, self.method_id,
                 self.table_digest, str(self.series_number_offset))
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]

    @property
    def domains_note(self) -> str:
        """' (model kernels B70f -> B30f)' when the engine's kernels differ from the labels."""
        src, dst = self.source_domain or self.source_kernel, self.target_domain or \
            self.target_kernel
        if (src, dst) == (self.source_kernel, self.target_kernel):
            return ""
        return f" (converted as {src} -> {dst})"


#: bumped when the meaning of the key's parts changes
KEY_VERSION = "1"


@dataclass(frozen=True)
class DerivedBy:
    """What kernelconv did to an image it wrote, read back from the image's headers."""

    source_kernel: str
    target_kernel: str
    method_id: str | None  # None when the header no longer holds it whole (see derivation_of)
    #: the derivation's key (Derivation.key); None for images of kernelconv versions that did
    #: not write it
    key: str | None = None


@dataclass(frozen=True)
class PixelEncoding:
    """How HU are stored: BitsStored, signedness, RescaleSlope and RescaleIntercept."""

    bits_stored: int
    signed: bool
    slope: float
    intercept: float


def derived_uid(kind: str, source_uid: str, key: str) -> str:
    """A deterministic UID (pydicom's root) for a derived series or instance of the source
    ``source_uid``, converted as the derivation with key ``key`` (:attr:`Derivation.key`)."""
    return str(generate_uid(entropy_srcs=["kernelconv", kind, source_uid, key]))


def choose_encoding(ds: Dataset) -> PixelEncoding:
    """Keep the source's encoding when it holds [-1024, 3071] HU, else pick one that does.

    All frames share one encoding; if frames have different rescales, the first frame's is kept
    only when it holds the range.
    """
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    bits = int(ds.get("BitsStored", 16))
    slope, intercept = frame_rescales(ds)[0]
    for b in (bits, 16):
        if 12 <= b <= 16 and encoding_holds(slope, intercept, b, signed):
            return PixelEncoding(b, signed, slope, intercept)
    return PixelEncoding(16, signed, 1.0, 0.0 if signed else HU_MIN)


#: Manufacturer of the Contributing Equipment item build_derived appends
KERNELCONV_MANUFACTURER = "kernelconv"
_CONTRIBUTION = re.compile(r"kernel conversion (?P<src>.+?) -> (?P<dst>.+?) \((?P<method>.*)\)"
                           r"(?: key (?P<key>[0-9a-f]{16}))?")
_DERIVATION = re.compile(r"CT reconstruction kernel conversion (?P<src>.+?) -> (?P<dst>.+?) "
                         r"by kernelconv ")


def derivation_of(ds: Dataset) -> DerivedBy | None:
    """How kernelconv derived ``ds``, or None when kernelconv did not derive it.

    kernelconv's images have ImageType value 1 DERIVED and a Contributing Equipment item with
    Manufacturer "kernelconv" whose ContributionDescription is ``kernel conversion SOURCE ->
    TARGET (METHOD_ID) key KEY`` (the last such item counts: an image converted twice keeps
    both; images of versions before the key have no `` key KEY``).
    Other software's DERIVED images and anything else give None. Where that description was
    cut short (older kernelconv versions cut it at 64 characters), the kernels come from
    DerivationDescription and method_id is None.
    """
    image_type = ds.get("ImageType") or []
    first = image_type if isinstance(image_type, str) else (image_type or [""])[0]
    if str(first).strip().upper() != "DERIVED":
        return None
    items = [item for item in ds.get("ContributingEquipmentSequence") or []
             if str(item.get("Manufacturer", "")).strip() == KERNELCONV_MANUFACTURER]
    if not items:
        return None
    contribution = str(items[-1].get("ContributionDescription", "") or "").strip()
    m = _CONTRIBUTION.fullmatch(contribution)
    if m:
        return DerivedBy(m["src"], m["dst"], m["method"], m["key"])
    m = _DERIVATION.match(str(ds.get("DerivationDescription", "") or "").strip())
    if m and contribution.startswith("kernel conversion "):
        return DerivedBy(m["src"], m["dst"], None)
    return None


def _code(value: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value
    return item


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


def _set_image_type(values: object, n: int, multiframe: bool = False) -> list[str]:
    """Value 1 DERIVED; value 2 SECONDARY (classic CT) or the source's PRIMARY/MIXED
    (Enhanced CT, whose value 2 is an enumerated examination characteristic); the rest kept."""
    src = [str(v) for v in (values or [])]  # type: ignore[attr-defined]
    rest = src[2:n] if len(src) > 2 else []
    second = (src[1] if len(src) > 1 and src[1] in ("PRIMARY", "MIXED") else "PRIMARY") \
        if multiframe else "SECONDARY"
    out = ["DERIVED", second] + rest
    if len(out) < 3:
        out.append("AXIAL")
    return out


def _write_pixels(
    ds: Dataset, hu: np.ndarray, stored_src: np.ndarray, enc: PixelEncoding
) -> None:
    src_signed = int(ds.get("PixelRepresentation", 0)) == 1
    same = (
        enc.signed == src_signed
        and enc.bits_stored == int(ds.get("BitsStored", 16))
        and all(r == (enc.slope, enc.intercept) for r in frame_rescales(ds))
    )
    stored = hu_to_stored(np.clip(hu, HU_MIN, HU_MAX), enc.slope, enc.intercept,
                          enc.bits_stored, enc.signed)
    if "PixelPaddingValue" in ds and same:
        pad = int(ds.PixelPaddingValue)
        stored[stored_src == pad] = pad  # keep padding (outside the field of view) as padding
    else:
        for kw in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
            ds.pop(kw, None)
    vr = "SS" if enc.signed else "US"
    ds.BitsAllocated = 16
    ds.BitsStored = enc.bits_stored
    ds.HighBit = enc.bits_stored - 1
    ds.PixelRepresentation = 1 if enc.signed else 0
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
    for kw in ("SmallestPixelValueInSeries", "LargestPixelValueInSeries",
               "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "DataSetTrailingPadding"):
        ds.pop(kw, None)
    ds.add_new(0x00280106, vr, int(stored.min()))  # SmallestImagePixelValue
    ds.add_new(0x00280107, vr, int(stored.max()))  # LargestImagePixelValue
    if "PixelPaddingValue" in ds:
        ds["PixelPaddingValue"].VR = vr
    little = stored.astype("<i2" if enc.signed else "<u2", copy=False)
    ds.add_new(0x7FE00010, "OW", little.tobytes())
    _set_rescale(ds, enc)


def _set_rescale(ds: Dataset, enc: PixelEncoding) -> None:
    """Write the encoding's rescale wherever a reader may take it from.

    Classic CT: the top level. Enhanced CT: every Pixel Value Transformation item (shared or
    per frame); where there is none, one is added to the shared group (the Enhanced CT IOD
    keeps the rescale there). A top-level rescale (non-conformant in Enhanced CT, but some
    files carry it and readers fall back on it: :func:`frame_rescales` does) is updated too,
    so no place a reader may look keeps the source's value.
    """
    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
        ds.RescaleSlope, ds.RescaleIntercept = enc.slope, enc.intercept
        return
    found = False
    for group_seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in ds.get(group_seq) or []:
            for item in group.get("PixelValueTransformationSequence") or []:
                item.RescaleSlope, item.RescaleIntercept = enc.slope, enc.intercept
                found = True
    if not found:
        if "SharedFunctionalGroupsSequence" not in ds or not ds.SharedFunctionalGroupsSequence:
            ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
        item = Dataset()
        item.RescaleIntercept, item.RescaleSlope = enc.intercept, enc.slope
        item.RescaleType = "HU"
        ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence = Sequence([item])
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        ds.RescaleSlope, ds.RescaleIntercept = enc.slope, enc.intercept


class EncodingError(SeriesError):
    """The derived file would not decode to the converted HU (a kernelconv bug, caught before
    anything is written)."""


def verify_encoding(ds: Dataset, hu: np.ndarray, stored_src: np.ndarray) -> float:
    """Decode the derived dataset ``ds`` as a reader would (pydicom's decoder, frame by frame;
    the rescale of each frame as :func:`frame_rescales` finds it) and compare it with ``hu``,
    the converted images (frames, rows, columns) it must hold. Pixels kept as padding (the
    source's PixelPaddingValue) are left out. Returns the largest difference beyond what the
    encoding can hold (clipping to [-1024, 3071] HU and rounding to the stored step); raises
    :class:`EncodingError` when it exceeds half a stored step.
    """
    from pydicom.pixels import iter_pixels

    rescales = frame_rescales(ds)
    pad = int(ds.PixelPaddingValue) if "PixelPaddingValue" in ds else None
    worst = 0.0
    for i, frame in enumerate(iter_pixels(ds)):
        slope, intercept = rescales[i]
        decoded = frame.astype(np.float64) * slope + intercept
        want = np.clip(hu[i].astype(np.float64), HU_MIN, HU_MAX)
        diff = np.abs(decoded - want)
        if pad is not None:
            diff[stored_src[i] == pad] = 0.0
        excess = float(diff.max()) - 0.5 * abs(slope)
        worst = max(worst, excess)
        if excess > 1e-3:
            raise EncodingError(
                f"the derived image would decode up to {float(diff.max()):.1f} HU away from the "
                f"conversion (frame {i + 1}, rescale {slope:g}/{intercept:g}): an encoding "
                "error in kernelconv, nothing written; please report it")
    return max(worst, 0.0)


def build_derived(
    ds: Dataset,
    hu: np.ndarray,
    stored_src: np.ndarray,
    derivation: Derivation,
    series_uid: str,
) -> Dataset:
    """Turn the source dataset ``ds`` (modified in place and returned) into the derived one.

    ``hu`` holds the converted images (frames, rows, columns) in HU; ``stored_src`` the source's
    stored values (used to keep padding pixels).
    """
    source_class = str(ds.SOPClassUID)
    source_uid = str(ds.SOPInstanceUID)
    source_series = str(ds.SeriesInstanceUID)
    source_ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    multiframe = "PerFrameFunctionalGroupsSequence" in ds
    enc = choose_encoding(ds)

    ds.remove_private_tags()  # vendor private data describes the original reconstruction
    for kw in ("InstanceCreationDate", "InstanceCreationTime", "InstanceCreatorUID"):
        ds.pop(kw, None)
    sop_uid = derived_uid("instance", source_uid, derivation.key)
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid

    ds.ImageType = _set_image_type(ds.get("ImageType"), 4 if multiframe else 3, multiframe)
    desc = str(ds.get("SeriesDescription", "") or "")
    suffix = derivation.suffix
    ds.SeriesDescription = (_truncate(desc, 64 - len(suffix)) + suffix).strip()
    try:
        number = int(ds.get("SeriesNumber"))
    except (TypeError, ValueError):
        number = 0
    ds.SeriesNumber = number + derivation.series_number_offset
    ds.DerivationDescription = _truncate(
        f"CT reconstruction kernel conversion {derivation.source_kernel} -> "
        f"{derivation.target_kernel} by kernelconv {__version__}: {derivation.method}"
        f"{derivation.domains_note}; converted images are an estimate, not a reconstruction "
        "from raw data", 1024)
    code = SMOOTHING if derivation.smoothing else EDGE_ENHANCEMENT
    ds.DerivationCodeSequence = Sequence([_code(code)])

    source_ref = Dataset()
    source_ref.ReferencedSOPClassUID = source_class
    source_ref.ReferencedSOPInstanceUID = source_uid
    source_ref.PurposeOfReferenceCodeSequence = Sequence([_code(SOURCE_FOR_PROCESSING)])

    equipment = Dataset()
    equipment.PurposeOfReferenceCodeSequence = Sequence([_code(PROCESSING_EQUIPMENT)])
    equipment.Manufacturer = KERNELCONV_MANUFACTURER
    equipment.ManufacturerModelName = "kernelconv"
    equipment.SoftwareVersions = __version__
    equipment.ContributionDescription = _truncate(
        f"kernel conversion {derivation.source_kernel} -> {derivation.target_kernel} "
        f"({derivation.method_id}) key {derivation.key}", 1024)  # ST: up to 1024 characters
    contributing = list(ds.get("ContributingEquipmentSequence") or [])
    ds.ContributingEquipmentSequence = Sequence(contributing + [equipment])

    if multiframe:
        _update_frames(ds, derivation, source_ref, code, source_series)
    else:
        ds.SourceImageSequence = Sequence([source_ref])
        ds.ConvolutionKernel = derivation.target_kernel

    lossy = LOSSY_SYNTAXES.get(source_ts)
    if lossy and str(ds.get("LossyImageCompression", "")).strip() != "01":
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = lossy
    _write_pixels(ds, hu, stored_src, enc)
    if ds.original_encoding[1] is False:
        _values_to_little_endian(ds)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(source_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    return ds


#: bytes per word of the VRs whose values pydicom keeps as the bytes read, in the file's order
_WORD_BYTES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _values_to_little_endian(ds: Dataset) -> None:
    """Make a dataset read from an Explicit VR Big Endian file hold little endian values only,
    so that it is written as Explicit VR Little Endian (the file meta's transfer syntax).

    Decoding every element (none stays raw, here and in nested sequences) turns numbers (US,
    SS, UL, SL, FL, FD, AT...) into values the writer encodes in the output's byte order.
    pydicom keeps OW/OF/OL/OD/OV values as bytes in the order read and does not swap them when
    writing (its dcmwrite documentation: they "must be converted manually"); they are swapped
    here. UN values have no known word size and cannot be swapped: they are removed. The
    pixel data is skipped: ``_write_pixels`` already wrote it little endian. Last, the original
    encoding is set to Explicit VR Little Endian, which is now what the values are, so that
    ``save_as`` no longer refuses the dataset as one that changes byte order.
    """
    for elem in list(ds):  # iterating a Dataset decodes its raw elements
        if elem.tag == 0x7FE00010:
            continue
        if elem.VR == "SQ":
            for item in elem.value:
                _values_to_little_endian(item)
        elif elem.VR in _WORD_BYTES and elem.value:
            n = _WORD_BYTES[elem.VR]
            raw = bytes(elem.value)
            whole = len(raw) - len(raw) % n
            elem.value = np.frombuffer(raw[:whole], dtype=f">u{n}").astype(f"<u{n}").tobytes() \
                + raw[whole:]
        elif elem.VR == "UN":
            del ds[elem.tag]
    ds.set_original_encoding(False, True)


def _update_frames(
    ds: Dataset, derivation: Derivation, source_ref: Dataset, code: tuple[str, str, str],
    source_series_uid: str,
) -> None:
    """Enhanced CT: FrameType, kernel and a Derivation Image item per frame."""
    shared = ds.get("SharedFunctionalGroupsSequence") or Sequence([Dataset()])
    if "SharedFunctionalGroupsSequence" not in ds:
        ds.SharedFunctionalGroupsSequence = shared
    recon_seen = False
    for group_seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in ds.get(group_seq) or []:
            for item in group.get("CTImageFrameTypeSequence") or []:
                item.FrameType = _set_image_type(item.get("FrameType"), 4, True)
            for item in group.get("CTReconstructionSequence") or []:
                item.ConvolutionKernel = derivation.target_kernel
                recon_seen = True
    if not recon_seen:
        recon = Dataset()
        recon.ConvolutionKernel = derivation.target_kernel
        shared[0].CTReconstructionSequence = Sequence([recon])
    # Enhanced CT Image module: DERIVED images name their sources (hierarchical reference)
    sop = Dataset()
    sop.ReferencedSOPClassUID = source_ref.ReferencedSOPClassUID
    sop.ReferencedSOPInstanceUID = source_ref.ReferencedSOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source_series_uid
    series.ReferencedSOPSequence = Sequence([sop])
    evidence = Dataset()
    evidence.StudyInstanceUID = ds.StudyInstanceUID
    evidence.ReferencedSeriesSequence = Sequence([series])
    ds.SourceImageEvidenceSequence = Sequence([evidence])
    for i, group in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
        ref = Dataset()
        ref.ReferencedSOPClassUID = source_ref.ReferencedSOPClassUID
        ref.ReferencedSOPInstanceUID = source_ref.ReferencedSOPInstanceUID
        ref.ReferencedFrameNumber = i
        ref.PurposeOfReferenceCodeSequence = Sequence([_code(SOURCE_FOR_PROCESSING)])
        item = Dataset()
        item.DerivationDescription = ds.DerivationDescription
        item.DerivationCodeSequence = Sequence([_code(code)])
        item.SourceImageSequence = Sequence([ref])
        group.DerivationImageSequence = Sequence([item])
