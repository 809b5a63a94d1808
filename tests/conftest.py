"""Fixtures shared by the tests; the helpers live in helpers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# every subprocess a test starts (the kernelconv command, python -m kernelconv, examples,
# benchmarks) imports this checkout, not a copy installed earlier (setup.sh installs a copy):
# an edit is tested without reinstalling. tests/test_install.py removes it on purpose.
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

from helpers import make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small randomly initialised model file (conv_dim 8, one residual block) of the
    HU-preserving residual variant: its random correction changes every image, but never
    local mean HU, so its conversions pass the HU check as a trained model's must."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_paper_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper's generator (direct output) with random weights: its output is arbitrary,
    so conversions with it fail the HU check unless the test lifts the limit."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-paper.safetensors",
                           output="direct", highpass_px=0.0)
