"""Make the small example series shipped in examples/data/chest-b70f (deterministic).

A crude synthetic chest slab (body, fat, lungs with vessels, spine) with white noise, labelled
as a sharp Siemens B70f series: enough to exercise `kernelconv convert` end to end on a fresh
machine. It is NOT the physics-based simulator (`kernelconv simulate`), and its pixels are not a
realistic B70f reconstruction: use it to try the tool, not to judge image quality.

    python examples/make_example_data.py examples/data/chest-b70f
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from pydicom.uid import RLELossless

from kernelconv.dicom.synthetic import SeriesInfo, ct_image, uid

N_SLICES = 4
SIZE = 512
PIXEL_MM = 0.684
SLICE_MM = 1.0


def phantom(z: float, rng: np.random.Generator) -> np.ndarray:
    """HU image of one slice; z in [0, 1] changes the anatomy slowly."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    x = (x - SIZE / 2) * PIXEL_MM
    y = (y - SIZE / 2) * PIXEL_MM
    hu = np.full((SIZE, SIZE), -1000.0, dtype=np.float32)
    body = (x / 160) ** 2 + (y / 115) ** 2 <= 1
    inner = (x / 150) ** 2 + (y / 105) ** 2 <= 1
    hu[body] = -100.0  # subcutaneous fat
    hu[inner] = 40.0  # muscle and mediastinum
    for side in (-1, 1):
        lung = ((x - side * 70) / (55 + 5 * z)) ** 2 + ((y + 5) / 80) ** 2 <= 1
        hu[lung] = -850.0
        for k in range(25):  # vessels: small discs inside the lung
            cx = side * 70 + 40 * np.cos(k * 2.4 + z)
            cy = -5 + 60 * np.sin(k * 1.7 + z)
            r = 1.5 + (k % 4)
            hu[((x - cx) ** 2 + (y - cy) ** 2 <= r * r) & lung] = 40.0
    hu[(x ** 2 + (y - 75) ** 2) <= 18 ** 2] = 700.0  # vertebral body
    hu[(x ** 2 + (y - 75) ** 2) <= 12 ** 2] = 250.0  # trabecular core
    hu[(x ** 2 + (y + 20) ** 2) <= 28 ** 2] = 45.0  # heart
    noise = rng.normal(0.0, 70.0, hu.shape).astype(np.float32)
    hu[body] += noise[body]
    hu[~body] += noise[~body] * 0.3
    return hu


def write_series(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20231008)
    root = "kernelconv example"
    info = SeriesInfo(
        study_uid=uid(root, "study"), series_uid=uid(root, "series"),
        frame_of_reference_uid=uid(root, "for"), patient_name="EXAMPLE^SYNTHETIC",
        patient_id="KC-EXAMPLE-0001", kernel="B70f", series_number=3,
        series_description="Thorax 1.0 B70f (synthetic)", study_description="Synthetic chest example",
        manufacturer="kernelconv example (synthetic)", pixel_mm=PIXEL_MM, slice_mm=SLICE_MM,
    )
    for i in range(N_SLICES):
        hu = phantom(i / max(1, N_SLICES - 1), rng)
        ds = ct_image(info, hu, i, -i * SLICE_MM, uid(root, "instance", i))
        ds.compress(RLELossless, generate_instance_uid=False)  # about half the size, and exercises compressed input
        ds.save_as(folder / f"IM{i + 1:04d}", enforce_file_format=True)


if __name__ == "__main__":
    write_series(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/data/chest-b70f"))
