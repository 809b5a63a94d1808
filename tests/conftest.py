"""Fixtures shared by the tests; the helpers live in helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small randomly initialised model file (conv_dim 8, one residual block)."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.safetensors")
