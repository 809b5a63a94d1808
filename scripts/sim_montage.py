"""PNG montage of one simulated slice in every kernel, lung and soft-tissue windows.

    python scripts/sim_montage.py SIM/patient-000 docs/img/sim-kernels.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw

from kernelconv.preview import window


def main() -> None:
    patient, out = Path(sys.argv[1]), Path(sys.argv[2])
    kernels = sorted(p.name for p in patient.iterdir() if p.is_dir())
    truth = np.load(patient / "truth.npz")["hu"]
    mid = truth.shape[0] // 2
    images = [("truth (noiseless)", truth[mid].astype(np.float32))]
    for k in kernels:
        ds = pydicom.dcmread(sorted((patient / k).iterdir())[mid])
        images.append((k, ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)))
    tile = 320
    canvas = Image.new("L", (tile * len(images), 2 * tile + 32), 0)
    draw = ImageDraw.Draw(canvas)
    for c, (name, hu) in enumerate(images):
        for r, (level, width, label) in enumerate(((-700, 1500, "lung"), (40, 400, "soft"))):
            g = Image.fromarray(window(hu, level, width)).resize((tile, tile),
                                                                 Image.Resampling.LANCZOS)
            canvas.paste(g, (c * tile, 16 + r * (tile + 16)))
            draw.text((c * tile + 4, 2 + r * (tile + 16)), f"{name}, {label} window", fill=255)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)


if __name__ == "__main__":
    main()
