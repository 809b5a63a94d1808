#!/usr/bin/env bash
# Re-simulated REAL anatomy from the shared real single-kernel archive, the extra training data
# of the model `resim-real-w8-v1` (models/resim-real-w8-v1.md), on top of
# scripts/make_training_data.sh's:
#
#   bash scripts/make_real_anatomy_data.sh DATA_DIR [ARCHIVE]
#
# ARCHIVE (default ../shared/data/real-ct-archive) holds real scanner series, one kernel each
# (its README gives their terms: the Mayo and CPTAC images are for research use only; nothing
# from them goes into the package, only a model trained on them, whose card says so). Each
# series is thinned to spread its slices over the scan, then re-simulated with every simulator
# kernel at its own pixel size (`simulate --from-dicom --randomise`: denoised, projected,
# randomised noise and kernel jitter, FBP), twice with different seeds.
#
# Never used here: the real PAIRS (../shared/data/real-ct-siemens-chest-pair and the Canon
# phantom), which stay held out for evaluation, and the Mayo quarter-dose copies (the same
# positions as the full-dose ones).
set -euo pipefail
DATA="${1:?usage: make_real_anatomy_data.sh DATA_DIR [ARCHIVE]}"
ARCHIVE="${2:-$(dirname "$0")/../../shared/data/real-ct-archive}"
[ -f "$ARCHIVE/MANIFEST.csv" ] || { echo "error: $ARCHIVE: no real archive (MANIFEST.csv)" >&2; exit 2; }
STAGE="$DATA/real-archive-slices"
python - "$ARCHIVE" "$STAGE" <<'PY'
import shutil, sys
from pathlib import Path
archive, stage = Path(sys.argv[1]), Path(sys.argv[2])
# (series folder, keep every n-th file): about 60 slices of three scanners and three regions
plan = [("cptac-lscc/C3N-00247/B70f", 8), ("dcm_qa_ct-ge/QMNx85rKkkg/STD+", 3)]
plan += [(str(p.relative_to(archive)), 1) for p in sorted(archive.glob("mayo-ldct/*/*_full"))]
for folder, step in plan:
    files = sorted((archive / folder).glob("*.dcm"))[::step]
    dest = stage / folder.replace("/", "_")
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        if not (dest / f.name).exists():
            shutil.copy(f, dest / f.name)
    print(f"{folder}: {len(files)} slices")
PY
for seed in 21 22; do
    kernelconv simulate "$DATA/train-real/archive-$seed" --from-dicom "$STAGE" --randomise \
        --seed "$seed"
done
