"""How often does each target-sampling mode ask for the slice's own kernel (no kernel change)?

Unpaired StarGAN learns a kernel change only from items whose target differs from their
source; an item asked for its own kernel trains the identity. Prints that fraction for batch
sizes 1, 2 and 4 over three kernels (docs/training.md, "Unpaired training that learns"):

    python benchmarks/target_sampling.py
"""

from __future__ import annotations

import torch

from kernelconv.training.loop import sample_targets


def main() -> None:
    torch.manual_seed(0)
    print("batch  " + "  ".join(f"{m:>8}" for m in ("shuffle", "random", "other")))
    for batch in (1, 2, 4):
        cells = []
        for mode in ("shuffle", "random", "other"):
            same = 0
            for _ in range(20000):
                labels = torch.randint(0, 3, (batch,))
                same += int((sample_targets(labels, 3, mode) == labels).sum())
            cells.append(f"{same / (20000 * batch):>8.1%}")
        print(f"{batch:<5}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
