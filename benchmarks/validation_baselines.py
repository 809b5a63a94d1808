"""Identity and the classical filter through `kernelconv train`'s own validation code.

An untrained ``residual`` generator is exactly the identity and an untrained
``filter_residual`` generator exactly the MTF-ratio filter (their last layer starts at zero),
so scoring them with :class:`~kernelconv.training.validation.PairedValidation` gives the two
baselines on the very slices a training run's ``RUN/validation.jsonl`` is scored on:

    python benchmarks/validation_baselines.py --val data/heldout/sim-reference --slices 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kernelconv.nets.generator import Generator, GeneratorConfig
from kernelconv.training.validation import PairedValidation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--val", type=Path, required=True, help="held-out paired folder")
    ap.add_argument("--slices", type=int, default=4, help="val_slices of the runs compared")
    ap.add_argument("--kernels", default="B30f,B50f,B70f")
    args = ap.parse_args()
    domains = args.kernels.split(",")
    val = PairedValidation(args.val, domains, None, args.slices)
    for label, output in (("identity", "residual"), ("filter", "filter_residual")):
        gen = Generator(GeneratorConfig(c_dim=len(domains), conv_dim=8, n_res=1, output=output,
                                        highpass_px=3.0))
        scores = val.run(gen, torch.device("cpu"))
        dirs = sorted({k.split("/")[1] for k in scores})
        print(f"{label:<9}" + "  ".join(
            f"{d}: {scores[f'val/{d}/psnr']:.2f} dB / noise {scores[f'val/{d}/noise_ratio']:.2f}"
            for d in dirs))


if __name__ == "__main__":
    main()
