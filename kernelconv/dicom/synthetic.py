"""Original (not derived) CT Image datasets for simulated or example data.

Headers look like a Siemens chest series: BitsStored 12, unsigned, RescaleIntercept -1024 (holds
exactly -1024..3071 HU), 1 mm slices, the kernel in ConvolutionKernel. Used by the simulator and
by examples/make_example_data.py.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from kernelconv import __version__
from kernelconv.kernel_response import REFERENCE_PIXEL_MM


@dataclass(frozen=True)
class SeriesInfo:
    """What is shared by the images of one synthetic series."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    patient_name: str
    patient_id: str
    kernel: str
    series_number: int
    series_description: str
    study_description: str = "Simulated chest CT"
    manufacturer: str = "kernelconv simulator"
    pixel_mm: float = REFERENCE_PIXEL_MM
    slice_mm: float = 1.0
    kvp: float = 120.0
    exposure_mas: float | None = None


def uid(*parts: object) -> str:
    """A deterministic UID from any parts (pydicom's root)."""
    return str(generate_uid(entropy_srcs=["kernelconv synthetic", *map(str, parts)]))


def acquisition_datetime(study_uid: str) -> tuple[str, str]:
    """(DA, TM) of a synthetic study's acquisition: a day of 2026 and a second of it derived
    from the Study UID, so every reconstruction of one simulated scan shares it and two scans
    differ (as real acquisitions do). Reconstructions of one acquisition are matched by it
    where anonymisation renewed their UIDs (:func:`kernelconv.dicom.dataset.scan_key`): one
    fixed time for every simulated patient made all patients of one geometry a single scan,
    which merged their pairs and their one-kernel-per-scan split."""
    h = int(hashlib.sha256(study_uid.encode()).hexdigest(), 16)
    day = datetime.date(2026, 1, 1) + datetime.timedelta(days=h % 365)
    second = (h // 365) % 86400
    return day.strftime("%Y%m%d"), f"{second // 3600:02d}{second // 60 % 60:02d}{second % 60:02d}"


def ct_image(info: SeriesInfo, hu: np.ndarray, index: int, z_mm: float,
             instance_uid: str) -> Dataset:
    """One CT Image Storage dataset holding ``hu`` (rows, columns), stored as Siemens does."""
    rows, cols = hu.shape
    stored = np.clip(np.rint(hu.astype(np.float64) + 1024.0), 0, 4095).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = instance_uid
    day, time = acquisition_datetime(info.study_uid)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = day
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = info.manufacturer
    ds.ManufacturerModelName = "kernelconv"
    ds.SoftwareVersions = __version__
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = info.study_description
    ds.SeriesDescription = info.series_description
    ds.PatientName = info.patient_name
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = info.slice_mm
    ds.KVP = info.kvp
    if info.exposure_mas is not None:
        ds.Exposure = int(round(info.exposure_mas))
    ds.DataCollectionDiameter = 500
    ds.ReconstructionDiameter = round(info.pixel_mm * cols, 3)
    ds.ConvolutionKernel = info.kernel
    ds.PatientPosition = "FFS"
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = info.series_uid
    ds.FrameOfReferenceUID = info.frame_of_reference_uid
    ds.StudyID = "1"
    ds.SeriesNumber = info.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = index + 1
    half_x = info.pixel_mm * cols / 2.0
    half_y = info.pixel_mm * rows / 2.0
    ds.ImagePositionPatient = [round(-half_x + info.pixel_mm / 2, 4),
                               round(-half_y + info.pixel_mm / 2, 4), round(z_mm, 4)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = round(z_mm, 4)
    ds.PixelSpacing = [info.pixel_mm, info.pixel_mm]
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1600
    ds.set_pixel_data(stored, "MONOCHROME2", 12, generate_instance_uid=False)
    return ds
