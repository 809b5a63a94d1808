#!/usr/bin/env bash
# The GPU suite (issue 28): every GPU figure of docs/performance.md in one bounded run.
#
#   bash benchmarks/gpu_suite.sh --prepare [DIR]        here, with network: wheels + test data
#   bash benchmarks/gpu_suite.sh RESULTS_DIR [--archive FILE.tgz]   on the GPU machine
#   bash benchmarks/gpu_suite.sh RESULTS_DIR --smoke    every step, tiny, on the CPU (< 3 min)
#
# Steps, in order of value, each bounded by `timeout` (its own limit times GPU_SUITE_CAP_SCALE,
# default 1) and by what is left of the suite's budget (GPU_SUITE_BUDGET_S, default 540 s;
# smoke 170 s), each writing RESULTS_DIR/STEP.json and RESULTS_DIR/STEP.log; a failed or
# timed-out step records its error in its JSON, and the suite goes on:
#   env                the GPU, driver, torch, CUDA, cuDNN, ONNX Runtime
#   inference-paper    model only, paper-size generator (random weights): engine paths,
#                      network sweep fp32/bf16/fp16 x batch 1-32 x channels_last,
#                      torch.compile, CUDA graph; fraction of the bf16 matmul peak
#   correctness        CUDA vs CPU on real CT slices, reduced precision, the filter,
#                      torchrun sharding on one GPU, an Enhanced CT larger than the batch
#   inference-default  model only, the bundled default model (same figures)
#   e2e                `kernelconv convert` of a 300-slice 512 x 512 series: paper-size
#                      generator and default model (bf16), filter; ratio to model-only
#   onnx               the same with ONNX Runtime's CUDA provider (skipped without it)
#   train-bench        train_bench.py, paper configuration, fp32 and AMP bf16
#   train-run          a paper-configuration training run from the default model for the
#                      time left, checkpointed and exported with --half (< 16 MB)
#   summary            RESULTS_DIR/summary.json: every figure, GPU, driver, versions
#
# The GPU machine has no network: `--prepare` (here) downloads the wheels it lacks for its
# Python (GPU_SUITE_PYVER, default 3.12) and copies pydicom-data's CT files (and a few shared
# real-CT slices where present) into DIR (default .gpu-suite, git-ignored through
# .git/info/exclude); carry DIR to the machine, where the suite installs them into /tmp.
# An onnxruntime-gpu wheel in DIR/ort, or GPU_SUITE_ORT (or its split parts *.part-*), is
# installed too (docs/performance.md, GPU suite, says how to bring it).
# Exit code: 0 when every step passed, 1 when one failed or timed out, 2 usage.
set -u

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
CARRY="${GPU_SUITE_CARRY:-$REPO/.gpu-suite}"
RESULTS="" SMOKE=0 ARCHIVE="" PREPARE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --archive) [ $# -ge 2 ] || usage; ARCHIVE="$2"; shift ;;
        --prepare) PREPARE=1
                   if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then CARRY="$2"; shift; fi ;;
        -h|--help) usage ;;
        -*) echo "gpu_suite.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$RESULTS" ] || usage; RESULTS="$1" ;;
    esac
    shift
done

if [ "$PREPARE" = 1 ]; then
    cd "$REPO" || exit 2
    pyver="${GPU_SUITE_PYVER:-3.12}"
    mkdir -p "$CARRY/wheels" "$CARRY/data/shared"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$pyver" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$CARRY/wheels" \
        pydicom==3.0.2 pylibjpeg==2.1.0 pylibjpeg-libjpeg pylibjpeg-openjpeg==2.6.0 \
        pylibjpeg-rle==2.2.0 finufft==2.5.1 pynetdicom==3.0.4 || exit 1
    "$PY" - "$CARRY/data" <<'EOF' || exit 1
import shutil, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from gpu_checks import ENHANCED_TEMPLATE, PYDICOM_CT, data_file, shared_files
dest = Path(sys.argv[1])
for name in (*PYDICOM_CT, ENHANCED_TEMPLATE):
    src = data_file(name)
    if src is None:
        sys.exit(f"{name}: pydicom-data is not installed here (pip install pydicom-data)")
    shutil.copyfile(src, dest / name)
for i, src in enumerate(shared_files()):
    shutil.copyfile(src, dest / "shared" / f"{i:02d}-{src.parent.name}-{src.name}")
EOF
    exclude="$(git -C "$REPO" rev-parse --git-path info/exclude 2>/dev/null)"
    rel="/${CARRY#"$REPO"/}/"
    if [ -n "$exclude" ] && [ "${CARRY#"$REPO"/}" != "$CARRY" ] && \
            ! grep -qxF "$rel" "$exclude" 2>/dev/null; then
        mkdir -p "$(dirname "$exclude")" && echo "$rel" >> "$exclude"
    fi
    du -sh "$CARRY"
    if [ "${CARRY#"$REPO"/}" != "$CARRY" ]; then
        echo "prepared $CARRY: carry it (run's carry: [\"${CARRY#"$REPO"/}\"])"
    else
        echo "prepared $CARRY (outside the repo: only a folder inside it can be carried)"
    fi
    exit 0
fi

[ -n "$RESULTS" ] || usage
mkdir -p "$RESULTS" || exit 2
RESULTS="$(cd "$RESULTS" && pwd)"
if [ -n "$ARCHIVE" ]; then
    mkdir -p "$(dirname "$ARCHIVE")" || exit 2
    ARCHIVE="$(cd "$(dirname "$ARCHIVE")" && pwd)/$(basename "$ARCHIVE")"
fi
cd "$REPO" || exit 2
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kc-gpu-suite.XXXXXX")"
export PYTHONUNBUFFERED=1 XDG_CACHE_HOME="$WORK/cache" KC_SUITE_DATA="$CARRY/data"
START=$(date +%s)

# What the machine lacks: carried wheels, the source tree itself, onnxruntime-gpu.
if ! "$PY" -c "import pydicom, finufft, pylibjpeg" 2>/dev/null && [ -d "$CARRY/wheels" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$CARRY"/wheels/*.whl && \
        export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
ORT="${GPU_SUITE_ORT:-$CARRY/ort}"
if [ -d "$ORT" ]; then
    ort_whl="$(ls "$ORT"/*.whl 2>/dev/null | head -n 1)"
    if [ -z "$ort_whl" ] && ls "$ORT"/*.part-* >/dev/null 2>&1; then
        first="$(ls "$ORT"/*.part-* | head -n 1)"
        ort_whl="$WORK/$(basename "${first%.part-*}")"
        cat "$ORT"/*.part-* > "$ort_whl"
    fi
    if [ -n "$ort_whl" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$WORK/ort" "$ort_whl" && \
            export PYTHONPATH="$WORK/ort${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
"$PY" -c "import kernelconv" 2>/dev/null || export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
KC=("$PY" -m kernelconv)
"${KC[@]}" --version >/dev/null 2>&1 || echo "gpu_suite: kernelconv does not start here" >&2

if [ "$SMOKE" = 1 ]; then
    DEV=cpu BUDGET="${GPU_SUITE_BUDGET_S:-170}"
else
    DEV=cuda BUDGET="${GPU_SUITE_BUDGET_S:-540}"
fi
DEADLINE=$((START + BUDGET))
CAP_SCALE="${GPU_SUITE_CAP_SCALE:-1}"  # step limits times this (a loaded CI machine: 3)
RESERVE=15  # for the summary
B=benchmarks
REAL=tests/data/siemens-chest-pair/B70f
: > "$RESULTS/steps.txt"
FAILED=0

archive() {
    [ -n "$ARCHIVE" ] || return 0
    tar -czf "$ARCHIVE.tmp" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")" && \
        mv "$ARCHIVE.tmp" "$ARCHIVE"
}

# step NAME LIMIT_S COMMAND...: run it bounded by LIMIT_S and the budget left
step() {
    local name="$1" cap=$(($2 * CAP_SCALE)) left limit t0 ms rc
    shift 2
    echo "$name" >> "$RESULTS/steps.txt"
    left=$((DEADLINE - $(date +%s) - RESERVE))
    limit=$((cap < left ? cap : left))
    t0=$(date +%s%N)
    if [ "$limit" -lt 10 ]; then
        echo "no time left in the ${BUDGET} s budget" > "$RESULTS/$name.log"
        printf '{"status": "skipped", "reason": "no time left in the %s s budget"}\n' \
            "$BUDGET" > "$RESULTS/$name.json"
        rc=0
    else
        echo "[gpu_suite] $name (limit ${limit} s) ..."
        STEP_TIMEOUT="$limit" timeout --kill-after=10 "$limit" "$@" \
            > "$RESULTS/$name.log" 2>&1
        rc=$?
    fi
    ms=$((($(date +%s%N) - t0) / 1000000))
    "$PY" $B/gpu_checks.py finish-step "$RESULTS/$name.json" --step "$name" --exit-code "$rc" \
        --seconds "$((ms / 1000)).$(printf %03d $((ms % 1000)))" --limit "$limit" \
        --log "$RESULTS/$name.log" || rc=1
    [ "$rc" = 0 ] || FAILED=1
    echo "[gpu_suite] $name: exit $rc, $(($(date +%s) - START)) s into the suite"
    archive
}

if [ "$SMOKE" = 1 ]; then
    TINY=(--conv-dim 8 --n-res 1)
    step env 60 "$PY" $B/gpu_checks.py env --device cpu --json "$RESULTS/env.json"
    step inference-paper 60 "$PY" $B/inference_bench.py "${TINY[@]}" --device cpu --slices 2 \
        --batch-size 2 --input "$REAL" --no-onnx --net-sweep --sweep-batches 1,2 \
        --min-time 0 --precisions fp32,bf16 --compile --compile-backend eager --cuda-graphs \
        --json "$RESULTS/inference-paper.json"
    step correctness 90 "$PY" $B/gpu_checks.py correctness --device cpu --slices 2 \
        --models default --frames 3 --batch-size 2 --torchrun-slices 1 \
        --json "$RESULTS/correctness.json"
    step inference-default 45 "$PY" $B/inference_bench.py --model default --device cpu \
        --slices 1 --batch-size 1 --input "$REAL" --no-onnx --batch-sizes 1 --net-sweep \
        --sweep-batches 1 --min-time 0 --precisions fp32 --cuda-graphs \
        --json "$RESULTS/inference-default.json"
    step e2e 60 "$PY" $B/convert_bench.py "${TINY[@]}" --device cpu --slices 2 --batch-size 2 \
        --runs paper,filter --series "$WORK/series" --cli --json "$RESULTS/e2e.json"
    step onnx 45 "$PY" $B/gpu_checks.py onnx --device cpu --json "$RESULTS/onnx.json" -- \
        "${TINY[@]}" --slices 2 --batch-size 2 --runs paper+onnx --series "$WORK/series"
    step train-bench 45 "$PY" $B/train_bench.py --device cpu --crop 128 --g-conv-dim 8 \
        --g-repeat 1 --d-conv-dim 8 --d-layers 4 --cycles 1 --n-critic 1 --amp none,bf16 \
        --json "$RESULTS/train-bench.json"
    step train-run 60 "$PY" $B/gpu_checks.py train-run --device cpu --smoke --slices 2 \
        --precision fp32 --out-dir "$RESULTS" --work "$WORK" --json "$RESULTS/train-run.json"
else
    step env 60 "$PY" $B/gpu_checks.py env --device cuda --json "$RESULTS/env.json"
    step inference-paper 150 "$PY" $B/inference_bench.py --device cuda --slices 32 \
        --batch-size 16 --input "$REAL" --no-onnx --batch-sizes 1,4,16,32 --net-sweep \
        --sweep-batches 1,2,4,8,16,32 --compile --cuda-graphs \
        --json "$RESULTS/inference-paper.json"
    step correctness 120 "$PY" $B/gpu_checks.py correctness --device cuda --slices 24 \
        --frames 40 --batch-size 16 --json "$RESULTS/correctness.json"
    step inference-default 75 "$PY" $B/inference_bench.py --model default --device cuda \
        --slices 32 --batch-size 16 --input "$REAL" --no-onnx --batch-sizes 1,4,16,32 \
        --net-sweep --sweep-batches 1,4,16,32 --precisions fp32,bf16,fp16 \
        --cuda-graphs --json "$RESULTS/inference-default.json"
    step e2e 150 "$PY" $B/convert_bench.py --device cuda --precision bf16 --batch-size 32 \
        --slices 300 --runs paper,default,filter --series "$WORK/series" --cli \
        --json "$RESULTS/e2e.json"
    step onnx 75 "$PY" $B/gpu_checks.py onnx --device cuda --json "$RESULTS/onnx.json" -- \
        --slices 300 --batch-size 32 --runs default+onnx,paper+onnx --series "$WORK/series"
    step train-bench 75 "$PY" $B/train_bench.py --device cuda --crop 512 --batch-size 2 \
        --cycles 2 --amp none,bf16 --json "$RESULTS/train-bench.json"
    step train-run 180 "$PY" $B/gpu_checks.py train-run --device cuda --precision bf16 \
        --out-dir "$RESULTS" --work "$WORK" --json "$RESULTS/train-run.json"
fi

smoke_flag=()
[ "$SMOKE" = 1 ] && smoke_flag=(--smoke)
"$PY" $B/gpu_checks.py summary "$RESULTS" "${smoke_flag[@]}" --budget "$BUDGET" \
    --wall "$(($(date +%s) - START))" > "$RESULTS/summary.log" 2>&1 || FAILED=1
cat "$RESULTS/summary.log"
archive
[ -z "$ARCHIVE" ] || cp "$RESULTS/summary.json" "$(dirname "$ARCHIVE")/summary.json"
rm -rf "$WORK"
echo "[gpu_suite] done in $(($(date +%s) - START)) s: $RESULTS/summary.json"
exit "$FAILED"
