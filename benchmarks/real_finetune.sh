#!/usr/bin/env bash
# The learned correction on a real pair, held out by slices (issue 27, part 1's third item and
# part 2; docs/calibration.md "The learned path"). The real Siemens chest pair (one patient,
# B40f and B70f of the same raw data, 30 slice positions) is split as benchmarks/real_eval.py
# splits it: the first 15 positions are the site's pairs (calibration and fine-tune), the last
# 15 are never trained or calibrated on and are what every figure is measured on.
#
#   bash benchmarks/real_finetune.sh SIEMENS_DIR OUT
#       SIEMENS_DIR: ../shared/data/real-ct-siemens-chest-pair/Lung_Dx-A0002 (B40f/, B70f/)
#
# Steps (about 17 minutes on the 2-core development CPU):
#   1. split into OUT/first and OUT/second (symbolic links, by ImagePositionPatient z)
#   2. kernelconv calibrate on the first half -> OUT/cal-first.json
#   3. two fine-tunes of the default's network (resim-fr-v1) on the first half, the recipe of
#      examples/training/site-finetune.json (paired L1, full slices, 300 iterations, the
#      correction started at zero), the site's kernel names as its labels (B40f from B30f's
#      label, B70f from B70f's):
#        ft-builtin     base filter: the built-in kernel table
#        ft-calibrated  base filter: the calibration of step 2 (--kernel-table), with its
#                       fitted transfer (as convert --method filter --kernel-table converts)
#        ft-windows     the same with the calibrated windows alone (g_base_transfers false:
#                       how --kernel-table trained before 2026-12-07)
#   4. benchmarks/real_eval.py with both models (--model-trained-on "first half": scored on
#      the second half only), and kernelconv convert + evaluate of the second half for every
#      method (noise ratio and NPS shape against the true target)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="${1:?usage: real_finetune.sh SIEMENS_DIR OUT}"
out="${2:?usage: real_finetune.sh SIEMENS_DIR OUT}"
src="$(cd "$src" && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$out"

if [ ! -d second ]; then
    python - "$src" <<'EOF'
import sys
from pathlib import Path

import pydicom

root = Path(sys.argv[1])
for kernel in ("B40f", "B70f"):
    files = sorted(((float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]), p)
                    for p in sorted((root / kernel).iterdir())), key=lambda t: t[0])
    half = len(files) // 2
    for part, chosen in (("first", files[:half]), ("second", files[half:])):
        folder = Path(part) / kernel
        folder.mkdir(parents=True, exist_ok=True)
        for _, p in chosen:
            (folder / p.name).symlink_to(p.resolve())
    print(f"{kernel}: {half} slices in first/, {len(files) - half} in second/")
EOF
fi

[ -f cal-first.json ] || kernelconv calibrate --pair first/B70f first/B40f \
    --out-table cal-first.json > calibrate.log 2>&1

recipe="$here/../examples/training/site-finetune.json"
python -c "import json, sys; c = json.load(open(sys.argv[1])); c['g_base_transfers'] = False
json.dump(c, open('site-finetune-windows.json', 'w'))" "$recipe"
variants="builtin calibrated windows"
for variant in $variants; do
    table=()
    config="$recipe"
    [ "$variant" != builtin ] && table=(--kernel-table cal-first.json)
    [ "$variant" = windows ] && config=site-finetune-windows.json
    if [ ! -f "models/ft-$variant.safetensors" ]; then
        kernelconv train --data first --run-dir "run-$variant" --config "$config" \
            --init resim-fr-v1 --kernels B40f=B30f,B70f=B70f "${table[@]}" --resume
        kernelconv export "run-$variant" --name "ft-$variant" --models-dir models
    fi
done

python "$here/real_eval.py" --siemens "$src" \
    --model-trained-on "first half" models/ft-builtin.safetensors \
    --model-trained-on "first half" models/ft-calibrated.safetensors \
    --model-trained-on "first half" models/ft-windows.safetensors \
    --json real-eval.json --markdown real-eval.md > real-eval.log

rm -rf ev && mkdir ev
for dir in "B40f B70f" "B70f B40f"; do
    set -- $dir
    kernelconv convert "second/$1" "ev/filter-$2" --to "$2" --method filter > /dev/null
    kernelconv convert "second/$1" "ev/calibration-$2" --to "$2" --method filter \
        --kernel-table cal-first.json > /dev/null
    for variant in $variants; do
        kernelconv convert "second/$1" "ev/ft-$variant-$2" --to "$2" \
            --model "models/ft-$variant.safetensors" > /dev/null
    done
    for m in filter calibration ft-builtin ft-calibrated ft-windows; do
        kernelconv evaluate --pred "ev/$m-$2" --ref second --report-dir "ev/report-$m-$2" \
            --label "$m $1 -> $2" > /dev/null || true  # exit 1: a limit failed, still scored
    done
    kernelconv evaluate --pred "second/$1" --ref second --target "$2" \
        --report-dir "ev/report-identity-$2" --label "identity $1 -> $2" > /dev/null || true
done
for f in ev/report-*/evaluation.md; do
    grep "^| B" "$f" | sed "s|^|$(basename "$(dirname "$f")") |"
done | tee evaluate-summary.txt
# each fine-tune against the filter of its own kernel table, same held-out slices
python "$here/real_finetune_differences.py" real-eval.json | tee paired-differences.txt
echo "real_eval: $out/real-eval.md"
