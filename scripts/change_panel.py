"""What a model changes in one slice: a PNG panel and how much of the change is a fine grid.

    python scripts/change_panel.py MODEL PATIENT_DIR SOURCE TARGET OUT.png [--slice N]

PATIENT_DIR is a simulated patient (one folder per kernel, e.g. data/heldout/sim-reference/
patient-000). The panel: the source slice, the conversion (lung window), the change
(conversion - source, +-100 HU) and the true change (target - source, same scale). Printed:
the change's standard deviation and the fraction of its power at the period-2 frequencies
(|f| within 1/8 cycle/pixel of Nyquist in x or y), beside the same fraction for the true
change; a generator that fools the classifier with a grid has far more of its change there.
For a filter_residual model the same for its correction to the MTF-ratio filter, beside the
filter's own error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kernelconv.dicom.dataset import decode_hu
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.engines.torch_engine import TorchEngine
from kernelconv.modelfile import read_info, resolve_model
from kernelconv.preview import window


def grid_fraction(change: np.ndarray) -> float:
    """Fraction of the change's power within 1/8 cycle/pixel of Nyquist in x or y."""
    power = np.abs(np.fft.fft2(change - change.mean())) ** 2
    fy = np.abs(np.fft.fftfreq(change.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(change.shape[1]))[None, :]
    near = (fy > 0.5 - 0.125) | (fx > 0.5 - 0.125)
    return float(power[near].sum() / max(power.sum(), 1e-12))


def main() -> None:
    import pydicom

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("patient", type=Path)
    ap.add_argument("source")
    ap.add_argument("target")
    ap.add_argument("out", type=Path)
    ap.add_argument("--slice", type=int, default=None, help="slice index (default: middle)")
    args = ap.parse_args()
    files = {k: sorted((args.patient / k).iterdir()) for k in (args.source, args.target)}
    i = len(files[args.source]) // 2 if args.slice is None else args.slice
    slices = {}
    for k, fs in files.items():
        ds = pydicom.dcmread(fs[i])
        slices[k] = decode_hu(ds, fs[i])[1][0].astype(np.float32)
        px = float(ds.PixelSpacing[0])
    src, tgt = slices[args.source], slices[args.target]
    model = resolve_model(args.model)
    engine = TorchEngine(model, "cpu")
    out = engine.convert(src[None], args.source, args.target, px)[0]
    change, truth = out - src, tgt - src
    print(f"change SD {change.std():.1f} HU (true change {truth.std():.1f} HU); "
          f"period-2 power fraction {grid_fraction(change):.3f} "
          f"(true change {grid_fraction(truth):.3f})")
    if read_info(model).arch_args.get("output") == "filter_residual":
        # the network's own part: what it adds to the MTF-ratio filter it starts from
        base = FilterEngine(noise_limit=False).convert(src[None], args.source, args.target,
                                                       px)[0]
        own, needed = out - base, tgt - base
        print(f"correction to the filter SD {own.std():.1f} HU (filter's error "
              f"{needed.std():.1f} HU); period-2 power fraction {grid_fraction(own):.3f} "
              f"(filter's error {grid_fraction(needed):.3f})")
    tile = 256
    panels = [(f"source {args.source}", window(src, -700, 1500)),
              (f"converted to {args.target}", window(out, -700, 1500)),
              ("change, +-100 HU", window(change, 0, 200)),
              (f"true change ({args.target} - source)", window(truth, 0, 200))]
    canvas = Image.new("L", (tile * len(panels), tile + 16), 0)
    draw = ImageDraw.Draw(canvas)
    for c, (name, img) in enumerate(panels):
        canvas.paste(Image.fromarray(img).resize((tile, tile), Image.Resampling.LANCZOS),
                     (c * tile, 16))
        draw.text((c * tile + 4, 2), name, fill=255)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"panel: {args.out}")


if __name__ == "__main__":
    main()
