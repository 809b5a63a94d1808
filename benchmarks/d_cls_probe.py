"""How fast can the discriminator's domain head learn to tell the kernels apart?

Trains only the U-Net discriminator's classification loss (no generator, no adversarial term)
on random crops of a training cache, and prints the held-out cross-entropy (ln 3 = 1.10 is
chance for three kernels) and accuracy every few steps, for each setting given. This isolates
the first link of StarGAN's kernel signal: if D cannot classify kernels, the generator's
classification loss carries no information about them (docs/training.md, "Unpaired training
that learns").

    python benchmarks/d_cls_probe.py --cache runs/u13/probe-all/cache \\
        --setting all:1e-4 --setting none:1e-4 --setting all:1e-3 --setting none:1e-3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernelconv.nets.discriminator import Discriminator, DiscriminatorConfig  # noqa: E402
from kernelconv.training.data import SliceSampler  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True, help="a run's cache/ folder")
    ap.add_argument("--setting", action="append", required=True,
                    help="SPECTRAL_NORM:LR[:INPUT_GAIN], e.g. all:1e-4 (the paper)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--conv-dim", type=int, default=16)
    ap.add_argument("--layers", type=int, default=5)
    args = ap.parse_args()
    index = json.loads((args.cache / "index.json").read_text())
    n_dom = len(index["domains"])
    held = SliceSampler(args.cache, index, args.crop, seed=999)
    test = [held.batch(16) for _ in range(4)]
    print(f"{'setting':<16} " + " ".join(f"{s:>11}" for s in
                                         range(args.every, args.steps + 1, args.every)))
    for setting in args.setting:
        sn, lr, *gain = setting.split(":")
        torch.manual_seed(0)
        disc = Discriminator(DiscriminatorConfig(c_dim=n_dom, conv_dim=args.conv_dim,
                                                 n_layers=args.layers, feature_channels=32,
                                                 spectral_norm=sn,
                                                 highpass_gain=int(gain[0]) if gain else 0))
        opt = torch.optim.Adam(disc.parameters(), float(lr), betas=(0.5, 0.999))
        sampler = SliceSampler(args.cache, index, args.crop, seed=1)
        cells = []
        t0 = time.perf_counter()
        for step in range(1, args.steps + 1):
            b = sampler.batch(args.batch)
            logits = disc(torch.from_numpy(b.images))[1]
            loss = F.cross_entropy(logits, torch.from_numpy(b.labels))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % args.every == 0:
                with torch.no_grad():
                    ce, acc = [], []
                    for t in test:
                        lg = disc(torch.from_numpy(t.images))[1]
                        lab = torch.from_numpy(t.labels)
                        ce.append(float(F.cross_entropy(lg, lab)))
                        acc.append(float((lg.argmax(1) == lab).float().mean()))
                cells.append(f"{np.mean(ce):.2f}/{np.mean(acc):.0%}")
        print(f"{setting:<16} " + " ".join(f"{c:>11}" for c in cells)
              + f"   ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
