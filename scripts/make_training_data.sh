#!/usr/bin/env bash
# The training and held-out data of the models `resim-fr-v1` (models/resim-fr-v1.md) and
# `unpaired-lw-v1` (models/unpaired-lw-v1.md), exactly.
#
#   bash scripts/make_training_data.sh DATA_DIR
#
# Real CT files come from pydicom-data (installed with the test extras); the real phantom pairs
# from ../shared/data/real-ct-canon-phantom are only used for evaluation. Every step resumes:
# finished patients are kept.
set -euo pipefail
DATA="${1:?usage: make_training_data.sh DATA_DIR}"
mkdir -p "$DATA/real-train" "$DATA/real-heldout"
python - "$DATA" <<'PY'
import shutil, sys
from pathlib import Path
from pydicom.data import get_testdata_file
data = Path(sys.argv[1])
# training anatomy: a GE head, a Siemens neck, a third head and a small GE image
for name in ("693_UNCR.dcm", "bad_sequence.dcm", "J2K_pixelrep_mismatch.dcm", "CT_small.dcm"):
    shutil.copy(get_testdata_file(name), data / "real-train" / name)
# held out: an abdomen, never used for training
shutil.copy(get_testdata_file("explicit_VR-UN.dcm"), data / "real-heldout" / "explicit_VR-UN.dcm")
PY
# training: procedural chests, randomised and at the reference scanner, and re-simulated
# real anatomy, 6 noise/kernel-jitter draws of each source file
kernelconv simulate "$DATA/train/sim-random" --patients 24 --slices 6 --randomise --seed 1
kernelconv simulate "$DATA/train/sim-reference" --patients 8 --slices 6 --seed 2
for seed in 11 12 13 14 15 16; do
    kernelconv simulate "$DATA/train/resim-$seed" --from-dicom "$DATA/real-train" --randomise \
        --seed "$seed"
done
# an archive-like set for unpaired training (docs/training.md, "Fourth round"): 96 more
# randomised chests, 2 slices each; kept out of data/train so the default model's recipe
# (every folder of data/train) stays as it was
kernelconv simulate "$DATA/unpaired/sim-archive" --patients 96 --slices 2 --randomise --seed 3
# held out (never trained on): other seeds, the abdomen, three pixel spacings
kernelconv simulate "$DATA/heldout/sim-reference" --patients 2 --slices 4 --seed 9001
kernelconv simulate "$DATA/heldout/sim-random" --patients 4 --slices 2 --randomise --seed 9002
kernelconv simulate "$DATA/heldout/resim" --from-dicom "$DATA/real-heldout" --seed 9003
for fov in 256 358 461; do  # 0.50, 0.70 and 0.90 mm pixels
    kernelconv simulate "$DATA/heldout/fov-$fov" --patients 1 --slices 2 --fov "$fov" --seed 9004
done
kernelconv simulate "$DATA/heldout/qa" --phantom qa  # MTF50 of converted edges (model_eval --qa)
