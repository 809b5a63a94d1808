"""Simulate patients (or the QA phantom) and write paired multi-kernel DICOM series.

Layout of OUT::

    OUT/patient-000/B30f/IM0001 ...   one series per kernel, same study and frame of reference,
    OUT/patient-000/B50f/...          slices paired by ImagePositionPatient
    OUT/patient-000/truth.npz         noiseless ground truth (HU, 512 x 512, the phantom
                                      averaged over each output pixel), lung mask, z positions,
                                      StudyInstanceUID and FrameOfReferenceUID, and this
                                      patient's acquisition ("variation", JSON: field of view,
                                      noise, table, kernel jitter, geometry)
    OUT/simulation.json               parameters, kernels, seeds, version

A patient's folders are written to a temporary name and renamed when complete, so an
interrupted run resumes by skipping finished patients.

Domain randomisation (``randomise``, an extension for training data that looks like real CT):
per patient, drawn from its seed, the noise level (x0.5 to x3 of the dose's, log-uniform), the
field of view (250-500 mm on 512 pixels: 0.49-0.98 mm pixels), the body size (x0.85-1.15),
a patient table or none, the value outside the reconstruction circle (reconstructed, or
padded to -1024 HU as many scanners store it), and a small jitter of each kernel's window
(cutoff x0.98-1.02, edge-enhancement gain x0.92-1.08: inside the spec windows). The same
acquisition code re-simulates real images (:mod:`kernelconv.sim.resim`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from kernelconv import __version__
from kernelconv.dicom.synthetic import SeriesInfo, ct_image, uid
from kernelconv.kernel_response import KernelResponse
from kernelconv.sim.phantom import ChestPatient, Slice, add_table, qa_slice
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
    fov: float = 350.0  # mm on ``matrix`` pixels (when not randomised)
    matrix: int = 512  # output rows and columns (1024: a high-resolution reconstruction)
    table: bool = False  # a patient table below the chest (when not randomised)
    randomise: bool = False  # extension: domain randomisation per patient (module docstring)


@dataclass(frozen=True)
class Variation:
    """What one patient's acquisition looks like: fixed by the config, or drawn per patient."""

    noise_factor: float = 1.0  # noise SD relative to the config's dose
    fov: float = 350.0
    body_scale: float = 1.0
    table: bool = False
    pad_outside: bool = False  # outside the reconstruction circle: -1024 HU
    jitter: tuple[tuple[str, float, float], ...] = ()  # (kernel, cutoff x, bump gain x)

    def kernels(self, kernels: list[KernelResponse]) -> list[KernelResponse]:
        by = {k: (c, g) for k, c, g in self.jitter}
        return [replace(k, cutoff=k.cutoff * by[k.name][0], bump_gain=k.bump_gain * by[k.name][1])
                if k.name in by else k for k in kernels]


def draw_variation(config: SimulationConfig, pseed: int,
                   kernels: list[KernelResponse]) -> Variation:
    """The patient's variation: the config's when not randomised, else a draw from its seed."""
    if not config.randomise or config.phantom == "qa":
        return Variation(fov=config.fov, table=config.table)
    rng = np.random.default_rng([pseed, 99])
    return Variation(
        noise_factor=float(np.exp(rng.uniform(np.log(0.5), np.log(3.0)))),
        fov=float(rng.uniform(250.0, 500.0)), body_scale=float(rng.uniform(0.85, 1.15)),
        table=bool(rng.random() < 0.7), pad_outside=bool(rng.random() < 0.5),
        jitter=tuple((k.name, float(rng.uniform(0.98, 1.02)), float(rng.uniform(0.92, 1.08)))
                     for k in kernels))


def block_mean(a: np.ndarray, k: int) -> np.ndarray:
    n = a.shape[0] // k
    return a.reshape(n, k, n, k).mean(axis=(1, 3))


def patient_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_simulation_json(out: Path, config: SimulationConfig, kernels: list[KernelResponse],
                          **extra: object) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulation.json").write_text(json.dumps({
        "kernelconv": __version__, "config": asdict(config),
        "kernels": [asdict(k) for k in kernels],
        "i0_per_dose": I0_PER_DOSE, "electronic_sd": ELECTRONIC_SD, **extra,
    }, indent=2) + "\n")


def install_patient(out: Path, name: str, write: Callable[[Path], None]) -> str:
    """Run ``write`` into a temporary folder and rename it to OUT/name when it completes;
    a finished patient (its truth.npz exists) is kept. Returns "exists" or "written"."""
    final = out / name
    if (final / "truth.npz").is_file():
        return "exists"
    tmp = out / f".kernelconv-tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return "written"


def simulate(
    out: Path,
    config: SimulationConfig,
    table: dict[str, KernelResponse],
    on_slice: Callable[[int], None] = lambda n: None,
    on_patient: Callable[[int, str], None] = lambda i, status: None,
) -> list[Path]:
    """Write ``config.patients`` patients under ``out``; returns their folders."""
    kernels = [table[k] for k in config.kernels]
    write_simulation_json(out, config, kernels)
    folders = []
    for p in range(config.patients):
        name = f"{'qa' if config.phantom == 'qa' else 'patient'}-{p:03d}"
        folders.append(out / name)

        def write(folder: Path, p: int = p, name: str = name) -> None:
            _simulate_patient(folder, name, p, config, kernels, on_slice)

        status = install_patient(out, name, write)
        if status == "exists":
            on_slice(config.slices)
        on_patient(p, status)
    return folders


def _simulate_patient(folder: Path, name: str, index: int, config: SimulationConfig,
                      kernels: list[KernelResponse], on_slice: Callable[[int], None]) -> None:
    pseed = patient_seed(config.seed, index)
    qa = config.phantom == "qa"
    var = draw_variation(config, pseed, kernels)
    if var == Variation(fov=350.0, table=var.table) and config.matrix == 512:
        geo = Geometry(oversample=config.oversample)  # the reference scanner, as always
    else:  # the object grid holds the whole patient even when the field of view is smaller
        geo = Geometry.for_fov(var.fov, 440.0 * max(1.0, var.body_scale), size=config.matrix,
                               oversample=config.oversample)
    patient = None if qa else ChestPatient.create(pseed, geo.fine_size, geo.fine_pixel,
                                                  var.body_scale)

    def slices() -> Iterator[tuple[float, Slice]]:
        for s in range(config.slices):
            z = (s - (config.slices - 1) / 2.0) * config.slice_spacing
            if patient is None:
                yield z, qa_slice(geo.fine_size, geo.fine_pixel)
                continue
            sl = patient.slice(z)
            if var.table:
                add_table(sl.hu, geo.fine_pixel, patient.params["b"] / 1.08 + 4.0)
            yield z, sl

    acquire(folder, name, ("kernelconv sim", config.seed, index, config.phantom), geo,
            var.kernels(kernels), slices(), config, var, pseed,
            "Simulated QA phantom" if qa else "Simulated chest CT", on_slice,
            dose=config.dose * (QA_DOSE if qa else 1.0),
            patient_id=f"SIM-{config.seed}-{index:03d}")


def acquire(folder: Path, name: str, root: tuple[object, ...], geo: Geometry,
            kernels: list[KernelResponse], slices: Iterator[tuple[float, Slice]],
            config: SimulationConfig, var: Variation, pseed: int, study_description: str,
            on_slice: Callable[[int], None], dose: float, body_part: str = "CHEST",
            patient_id: str = "", series_prefix: str = "Thorax 1.0") -> None:
    """Scan objects slice by slice and write one series per kernel plus truth.npz: the
    acquisition shared by the procedural phantoms and the re-simulation of real images.
    ``slices`` yields (z mm, object on ``geo``'s fine grid)."""
    i0 = I0_PER_DOSE * dose / var.noise_factor**2
    study, frame = uid(*root, "study"), uid(*root, "frame")
    infos = {
        k.name: SeriesInfo(
            study_uid=study, series_uid=uid(*root, "series", k.name),
            frame_of_reference_uid=frame, patient_name=f"SIM^{name.upper()}",
            patient_id=patient_id or f"SIM-{config.seed}-{name}", kernel=k.name,
            series_number=10 + i, series_description=f"{series_prefix} {k.name} (simulated)",
            study_description=study_description,
            pixel_mm=geo.pixel, slice_mm=config.slice_spacing,
            exposure_mas=100.0 * dose / var.noise_factor**2,
        )
        for i, k in enumerate(kernels)
    }
    for k in kernels:
        (folder / k.name).mkdir(parents=True)
    c = (np.arange(geo.size) - geo.size / 2 + 0.5) * geo.pixel
    outside = (c[None, :] ** 2 + c[:, None] ** 2) > (geo.fov / 2.0) ** 2
    truth, lungs, zs = [], [], []
    for s, (z, sl) in enumerate(slices):
        rng = np.random.default_rng([pseed, s, 7])
        sino = add_noise(project(hu_to_mu(sl.hu), geo), i0, ELECTRONIC_SD, rng)
        images = fbp(sino, geo, kernels)  # one noise realisation, every kernel
        for k, img in zip(kernels, images, strict=True):
            if var.pad_outside:
                img[outside] = -1024.0
            ds = ct_image(infos[k.name], img, s, z, uid(*root, "instance", k.name, s))
            if body_part != "CHEST":
                ds.BodyPartExamined = body_part
                if not body_part:
                    del ds.BodyPartExamined
            ds.save_as(folder / k.name / f"IM{s + 1:04d}", enforce_file_format=True)
        crop = geo.crop
        truth.append(np.rint(block_mean(sl.hu[crop, crop].astype(np.float64), geo.oversample))
                     .astype(np.int16))
        lungs.append(block_mean(sl.lung[crop, crop].astype(np.float64), geo.oversample) >= 0.5)
        zs.append(z)
        on_slice(1)
    variation = json.dumps({**asdict(var), "pixel_mm": geo.pixel, "i0": i0,
                            "geometry": asdict(geo)})
    np.savez_compressed(folder / "truth.npz", hu=np.stack(truth), lung=np.stack(lungs),
                        z=np.array(zs), kernels=np.array([k.name for k in kernels]),
                        study_uid=np.array(study), frame_of_reference_uid=np.array(frame),
                        variation=np.array(variation))
