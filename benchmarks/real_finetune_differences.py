"""Paired per-slice PSNR differences of each fine-tune of benchmarks/real_finetune.sh to the
filter of its own kernel table, on the same held-out slices (from real_eval.py's JSON).

    python benchmarks/real_finetune_differences.py OUT/real-eval.json
"""

from __future__ import annotations

import json
import sys

import numpy as np

#: each fine-tune and the filter on the kernel table its base filter started from
BASES = {"ft-builtin": "filter (built-in table)", "ft-calibrated": "paired calibration",
         "ft-windows": "paired calibration"}


def main() -> None:
    results = json.load(open(sys.argv[1], encoding="utf-8"))
    figures = next(v for k, v in results.items() if k.startswith("Siemens"))
    rng = np.random.default_rng(0)
    for model, base in BASES.items():
        row = f"model {model} (trained on first half)"
        for direction, fig in figures.get(row, {}).items():
            ref = dict(zip(figures[base][direction]["slice_keys"],
                           figures[base][direction]["psnr_slices"], strict=True))
            d = np.array([v - ref[k] for k, v in zip(fig["slice_keys"], fig["psnr_slices"],
                                                      strict=True)])
            boot = [rng.choice(d, len(d)).mean() for _ in range(2000)]
            print(f"{model} - {base}, {direction}: {d.mean():+.2f} dB (SD {d.std(ddof=1):.2f}, "
                  f"95% {np.percentile(boot, 2.5):+.2f}..{np.percentile(boot, 97.5):+.2f}, "
                  f"min {d.min():+.2f}, n {len(d)})")


if __name__ == "__main__":
    main()
