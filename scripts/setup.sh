#!/usr/bin/env bash
# Set up kernelconv on a fresh machine, into the current Python environment.
#
#   bash scripts/setup.sh          install kernelconv (plain `pip install .`)
#   bash scripts/setup.sh test     install it with the test extras, the DICOM tools the tests
#                                  use (apt: dicom3tools, dcmtk, orthanc), then run ruff, mypy
#                                  and the whole pytest suite
#
# Both install a copy (not an editable install): an editable install points into this checkout,
# so once the checkout is moved or removed, `kernelconv` fails with "No module named
# 'kernelconv'" (an external check met exactly that). Developers who edit the code and want
# the `kernelconv` command to follow: EDITABLE=1 bash scripts/setup.sh test. The tests import
# this checkout's code either way: python -m pytest from this folder puts it first, and
# tests/conftest.py puts it on PYTHONPATH for every command a test starts.
#
# Where no NVIDIA GPU is present and torch is not installed yet, the CPU build of torch is
# installed first (torch==2.13.0), so that the package's torch range does not pull a multi-GB
# CUDA build. With a GPU, pip picks the CUDA build that the range allows.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
mode="${1:-install}"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: GPU found; the torch requirement range selects a CUDA build"
    else
        echo "setup: no GPU; installing the CPU build of torch first"
        "$PY" -m pip install --quiet "torch==2.13.0"
    fi
fi

case "$mode" in
install)
    "$PY" -m pip install --quiet .
    echo "setup: kernelconv $("$PY" -c 'import kernelconv; print(kernelconv.__version__)') installed"
    ;;
test)
    if [ "${EDITABLE:-0}" = 1 ]; then
        "$PY" -m pip install --quiet -e ".[test,onnx,train]"
    else
        "$PY" -m pip install --quiet ".[test,onnx,train]"
    fi
    need=()
    command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
    [ -x /usr/bin/dcmdump ] && [ -x /usr/bin/storescu ] || need+=(dcmtk)
    [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
    if [ "${#need[@]}" -gt 0 ]; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        echo "setup: installing ${need[*]} (apt)"
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    echo "setup: ruff"
    "$PY" -m ruff check kernelconv tests benchmarks examples
    echo "setup: mypy"
    "$PY" -m mypy
    echo "setup: pytest"
    "$PY" -m pytest
    ;;
*)
    echo "usage: bash scripts/setup.sh [install|test]" >&2
    exit 2
    ;;
esac
