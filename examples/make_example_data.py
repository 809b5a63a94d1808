"""Make the example series shipped in examples/data/ (deterministic).

One simulated patient from `kernelconv simulate` (seed 20261124, a seed no training, validation
or evaluation set of this project uses), 4 slices of 512 x 512:

- ``chest-b70f/``: the sharp B70f series, re-encoded RLE Lossless so that a first run also
  exercises compressed input: what README command 1 converts;
- ``chest-b30f-reference/``: the B30f series (RLE too) of the same simulated raw data, the truth a B70f ->
  B30f conversion can be compared with (``kernelconv evaluate``).

    python examples/make_example_data.py examples/data
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pydicom
from pydicom.uid import RLELossless

from kernelconv.kernel_response import load_response_table
from kernelconv.sim.series import SimulationConfig, simulate

SEED = 20261124
SLICES = 4


def write_examples(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="kc-example-") as tmp:
        [patient] = simulate(Path(tmp), SimulationConfig(patients=1, slices=SLICES, seed=SEED),
                             load_response_table())
        for kernel, folder, compress in (("B70f", "chest-b70f", True),
                                         ("B30f", "chest-b30f-reference", True)):
            dst = out / folder
            if dst.exists():
                shutil.rmtree(dst)
            dst.mkdir(parents=True)
            for i, src in enumerate(sorted((patient / kernel).iterdir())):
                ds = pydicom.dcmread(src)
                if compress:
                    ds.compress(RLELossless, generate_instance_uid=False)
                ds.save_as(dst / f"IM{i + 1:04d}", enforce_file_format=True)


if __name__ == "__main__":
    write_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/data"))
