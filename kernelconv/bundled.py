"""Where the files shipped with the package are: models/ and examples/ of the source tree.

A plain ``pip install .`` installs them as the data packages ``kernelconv._models`` and
``kernelconv._examples`` (setup.cfg ``package_dir``); an editable install or a source checkout
finds the same folders through the same package names.
"""

from __future__ import annotations

from pathlib import Path


def _data_dir(package: str, repo_name: str) -> Path | None:
    here = Path(__file__).resolve().parent
    installed = here / package.rpartition(".")[2]  # site-packages/kernelconv/_models
    if installed.is_dir():
        return installed
    repo = here.parent / repo_name  # a source checkout or an editable install
    return repo if repo.is_dir() else None


def bundled_models_dir() -> Path | None:
    """The shipped models folder (models/ in the source tree)."""
    return _data_dir("kernelconv._models", "models")


def examples_dir() -> Path | None:
    """The shipped examples folder (examples/ in the source tree)."""
    return _data_dir("kernelconv._examples", "examples")


def example_series_dir() -> Path | None:
    """The bundled synthetic B70f example series, if installed."""
    base = examples_dir()
    path = base / "data" / "chest-b70f" if base else None
    return path if path and path.is_dir() else None
