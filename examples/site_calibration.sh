#!/usr/bin/env bash
# Calibrate the conversion to a site's scanner on one part of its paired reconstructions and
# check it on another (the bundled real Canon phantom: FC51 lung kernel, FC13 body kernel of
# the same raw data; phantom1 calibrates, phantom2 is held out). docs/calibration.md.
#
#   bash examples/site_calibration.sh [OUT]              calibrate, convert, evaluate (~1 min)
#   FINETUNE=1 bash examples/site_calibration.sh [OUT]   also fine-tune the default model on
#                                                        phantom1 (300 iterations; ~12 min CPU)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="$here/data/canon-phantom"
out="${1:-site-calibration}"
mkdir -p "$out"

# 1. the site's kernel table from phantom1's pairs (pairs found although the UIDs differ)
kernelconv calibrate "$data/phantom1" --out-table "$out/site-kernels.json" --plot "$out/site-kernels.png"

# 2. held-out phantom2, both directions: the filter with the site's calibration, and without
#    it (the vendor table's estimates for FC13/FC51), each evaluated against the true kernel
for dir in "FC51 FC13" "FC13 FC51"; do
    set -- $dir
    kernelconv convert "$data/phantom2/$1" "$out/calibrated-$2" --to "$2" --method filter \
        --kernel-table "$out/site-kernels.json"
    kernelconv evaluate --pred "$out/calibrated-$2" --ref "$data/phantom2" \
        --report-dir "$out/report-calibrated-$2" --label "filter, site calibration"
    kernelconv convert "$data/phantom2/$1" "$out/uncalibrated-$2" --to "$2" --method filter
    kernelconv evaluate --pred "$out/uncalibrated-$2" --ref "$data/phantom2" \
        --report-dir "$out/report-uncalibrated-$2" --label "filter, vendor estimates"
    kernelconv evaluate --pred "$data/phantom2/$1" --ref "$data/phantom2" --target "$2" \
        --report-dir "$out/report-identity-$2" --label identity
done

# 3. (optional) the learned path: fine-tune the default model on phantom1's pairs, with the
#    site's kernels as its domains and its calibration as the base filter
if [ "${FINETUNE:-0}" = 1 ]; then
    kernelconv train --data "$data/phantom1" --run-dir "$out/finetune-run" \
        --config "$here/training/site-finetune.json" --init resim-fr-v1 \
        --kernels FC13=B30f,FC51=B70f --kernel-table "$out/site-kernels.json"
    kernelconv export "$out/finetune-run" --name site-finetune --models-dir "$out/models"
    for dir in "FC51 FC13" "FC13 FC51"; do
        set -- $dir
        kernelconv convert "$data/phantom2/$1" "$out/finetuned-$2" --to "$2" \
            --model "$out/models/site-finetune.safetensors"
        kernelconv evaluate --pred "$out/finetuned-$2" --ref "$data/phantom2" \
            --report-dir "$out/report-finetuned-$2" --label "fine-tuned model"
    done
fi
echo "reports: $out/report-*/evaluation.md"
