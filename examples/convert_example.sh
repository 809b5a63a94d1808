#!/usr/bin/env bash
# Convert the bundled example series from B70f to B30f and write a preview.
#   bash examples/convert_example.sh [OUT]        (MODEL=name-or-path to pick a model)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-converted-example}"
kernelconv convert "$here/data/chest-b70f" "$out" --to B30f ${MODEL:+--model "$MODEL"} \
    --preview "$out/preview.png"
# The true B30f images of the same simulated raw data ship beside it: how close is the result?
kernelconv evaluate --pred "$out" --ref "$here/data/chest-b30f-reference" --report-dir "$out/report"
