"""Simulate patients (or the QA phantom) and write paired multi-kernel DICOM series.

Layout of OUT::

    OUT/patient-000/B30f/IM0001 ...   one series per kernel, same study and frame of reference,
    OUT/patient-000/B50f/...          slices paired by ImagePositionPatient
    OUT/patient-000/truth.npz         noiseless ground truth (HU, 512 x 512, the phantom
                                      averaged over each output pixel), lung mask, z positions,
                                      StudyInstanceUID and FrameOfReferenceUID
    OUT/simulation.json               parameters, kernels, seeds, version

A patient's folders are written to a temporary name and renamed when complete, so an
interrupted run resumes by skipping finished patients.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kernelconv import __version__
from kernelconv.dicom.synthetic import SeriesInfo, ct_image, uid
from kernelconv.kernel_response import KernelResponse
from kernelconv.sim.phantom import ChestPatient, qa_slice
from kernelconv.sim.scanner import Geometry, add_noise, fbp, hu_to_mu, project

#: photons per detector sample per view, unattenuated, at dose 1.0 (chest: B30f soft-tissue
#: noise SD ~15 HU; see docs/simulation.md for the measurement)
I0_PER_DOSE = 1.2e5
ELECTRONIC_SD = 8.0  # photons
QA_DOSE = 10.0  # QA phantom default: high dose, as for MTF measurements on real scanners


@dataclass(frozen=True)
class SimulationConfig:
    patients: int = 1
    slices: int = 16
    kernels: tuple[str, ...] = ("B30f", "B50f", "B70f")
    seed: int = 0
    dose: float = 1.0
    phantom: str = "chest"  # or "qa"
    slice_spacing: float = 1.0  # mm
    oversample: int = 2


def block_mean(a: np.ndarray, k: int) -> np.ndarray:
    n = a.shape[0] // k
    return a.reshape(n, k, n, k).mean(axis=(1, 3))


def patient_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def simulate(
    out: Path,
    config: SimulationConfig,
    table: dict[str, KernelResponse],
    on_slice: Callable[[int], None] = lambda n: None,
    on_patient: Callable[[int, str], None] = lambda i, status: None,
) -> list[Path]:
    """Write ``config.patients`` patients under ``out``; returns their folders."""
    kernels = [table[k] for k in config.kernels]
    geo = Geometry(oversample=config.oversample)
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulation.json").write_text(json.dumps({
        "kernelconv": __version__, "config": asdict(config),
        "geometry": asdict(geo), "kernels": [asdict(k) for k in kernels],
        "i0_per_dose": I0_PER_DOSE, "electronic_sd": ELECTRONIC_SD,
    }, indent=2) + "\n")
    folders = []
    for p in range(config.patients):
        name = f"{'qa' if config.phantom == 'qa' else 'patient'}-{p:03d}"
        final = out / name
        folders.append(final)
        if (final / "truth.npz").is_file():
            on_patient(p, "exists")
            on_slice(config.slices)
            continue
        tmp = out / f".kernelconv-tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _simulate_patient(tmp, name, p, config, geo, kernels, on_slice)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        on_patient(p, "written")
    return folders


def _simulate_patient(folder: Path, name: str, index: int, config: SimulationConfig,
                      geo: Geometry, kernels: list[KernelResponse],
                      on_slice: Callable[[int], None]) -> None:
    pseed = patient_seed(config.seed, index)
    qa = config.phantom == "qa"
    dose = config.dose * (QA_DOSE if qa else 1.0)
    i0 = I0_PER_DOSE * dose
    patient = None if qa else ChestPatient.create(pseed, geo.fine_size, geo.fine_pixel)
    root = ("kernelconv sim", config.seed, index, config.phantom)
    study, frame = uid(*root, "study"), uid(*root, "frame")
    infos = {
        k.name: SeriesInfo(
            study_uid=study, series_uid=uid(*root, "series", k.name),
            frame_of_reference_uid=frame, patient_name=f"SIM^{name.upper()}",
            patient_id=f"SIM-{config.seed}-{index:03d}", kernel=k.name,
            series_number=10 + i, series_description=f"Thorax 1.0 {k.name} (simulated)",
            study_description="Simulated QA phantom" if qa else "Simulated chest CT",
            pixel_mm=geo.pixel, slice_mm=config.slice_spacing, exposure_mas=100.0 * dose,
        )
        for i, k in enumerate(kernels)
    }
    for k in kernels:
        (folder / k.name).mkdir(parents=True)
    truth, lungs, zs = [], [], []
    for s in range(config.slices):
        z = (s - (config.slices - 1) / 2.0) * config.slice_spacing
        sl = qa_slice(geo.fine_size, geo.fine_pixel) if patient is None else patient.slice(z)
        rng = np.random.default_rng([pseed, s, 7])
        sino = add_noise(project(hu_to_mu(sl.hu), geo), i0, ELECTRONIC_SD, rng)
        images = fbp(sino, geo, kernels)  # one noise realisation, every kernel
        for k, img in zip(kernels, images, strict=True):
            ds = ct_image(infos[k.name], img, s, z, uid(*root, "instance", k.name, s))
            ds.save_as(folder / k.name / f"IM{s + 1:04d}", enforce_file_format=True)
        truth.append(np.rint(block_mean(sl.hu.astype(np.float64), geo.oversample))
                     .astype(np.int16))
        lungs.append(block_mean(sl.lung.astype(np.float64), geo.oversample) >= 0.5)
        zs.append(z)
        on_slice(1)
    np.savez_compressed(folder / "truth.npz", hu=np.stack(truth), lung=np.stack(lungs),
                        z=np.array(zs), kernels=np.array([k.name for k in kernels]),
                        study_uid=np.array(study), frame_of_reference_uid=np.array(frame))
