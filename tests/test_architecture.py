"""The layering of docs/architecture.md, checked on every import statement of the package
(lazy imports inside functions included): arrows point down, never up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kernelconv"

BASE = {"kernelconv", "kernelconv.errors", "kernelconv.hu", "kernelconv.kernels",
        "kernelconv.kernel_response", "kernelconv.fileio", "kernelconv.bundled",
        "kernelconv.hu_check", "kernelconv.noise", "kernelconv.fingerprint",
        "kernelconv.vendor_kernels"}
BLOCKS = {"kernelconv.dicom", "kernelconv.nets", "kernelconv.engines", "kernelconv.modelfile",
          "kernelconv.preview"}
SERVICES = {"kernelconv.pipeline", "kernelconv.sim", "kernelconv.evaluation",
            "kernelconv.training", "kernelconv.pacs", "kernelconv.calibration"}
FRONT = {"kernelconv.cli", "kernelconv.__main__"}


def _unit(module: str) -> str:
    """kernelconv.dicom.derived -> kernelconv.dicom (the unit the rules speak about)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "kernelconv" else parts[0]


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[module] = {_unit(n) for n in names}
    return found


IMPORTS = _imports()


def _of(unit: str) -> set[str]:
    return set().union(*(v for k, v in IMPORTS.items() if _unit(k) == unit))


def test_every_module_belongs_to_a_layer() -> None:
    units = {_unit(m) for m in IMPORTS}
    assert units <= BASE | BLOCKS | SERVICES | FRONT, units - (BASE | BLOCKS | SERVICES | FRONT)


@pytest.mark.parametrize("unit", sorted(BASE | BLOCKS | SERVICES))
def test_nothing_below_the_cli_imports_it(unit: str) -> None:
    assert not _of(unit) & FRONT


@pytest.mark.parametrize("unit", sorted(BASE))
def test_base_modules_import_only_base_modules(unit: str) -> None:
    ours = {n for n in _of(unit) if n.startswith("kernelconv")}
    assert ours <= BASE, ours - BASE


@pytest.mark.parametrize("unit", sorted(BLOCKS))
def test_building_blocks_never_import_services(unit: str) -> None:
    assert not _of(unit) & SERVICES, _of(unit) & SERVICES


def test_dicom_never_imports_torch_or_the_engines() -> None:
    assert not _of("kernelconv.dicom") & {"torch", "kernelconv.engines", "kernelconv.nets",
                                         "kernelconv.modelfile"}


def test_nets_are_pure_modules() -> None:
    ours = {n for n in _of("kernelconv.nets") if n.startswith("kernelconv")}
    assert ours <= {"kernelconv.nets"}, ours
    assert not _of("kernelconv.nets") & {"pydicom", "safetensors", "onnx"}


def test_engines_know_no_dicom_and_no_simulator() -> None:
    assert not _of("kernelconv.engines") & {"kernelconv.dicom", "kernelconv.sim", "pydicom"}


def test_every_package_is_declared_for_installation() -> None:
    """A package folder missing from setup.cfg's explicit list installs without its modules
    (the cli/ split once shipped a wheel whose entry point could not import)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(PACKAGE.parent / "setup.cfg")
    declared = set(cfg["options"]["packages"].split())
    on_disk = {".".join(p.parent.relative_to(PACKAGE.parent).parts)
               for p in PACKAGE.rglob("__init__.py")}
    assert on_disk - declared == set()
