"""The vendor kernel table: every vendor's body, lung and head kernels, every entry sourced (with
its reference) or marked an estimate, windows that meet their figures, names that resolve as
scanners write them, the documentation in step with the table, and the uncalibrated filter on
the real Canon phantom."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from test_calibrate import PHANTOM, _psnr, _stack

from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.errors import KernelError
from kernelconv.kernel_response import (
    BUILTIN_RESPONSES,
    allowed_noise_ratio,
    load_response_table,
    mtf_figures,
    predicted_noise_ratio,
)
from kernelconv.kernels import KernelAliases, read_kernel_map
from kernelconv.vendor_kernels import REFERENCES, VENDOR_KERNELS, targets

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOC = ROOT / "docs" / "vendor-kernels.md"
TAG = re.compile(r"\[([A-Z0-9]+)\]")


def test_every_vendor_has_body_lung_and_head_kernels_and_names_are_unique() -> None:
    names = [k.name for k in VENDOR_KERNELS]
    assert len(names) == len(set(names))
    assert len({n.strip().lower() for n in names}) == len(names)  # distinct as aliases too
    assert not set(names) & {k.name for k in BUILTIN_RESPONSES}  # the spec kernels stay
    vendors = {k.vendor for k in VENDOR_KERNELS}
    assert vendors == {"GE", "Philips", "Canon", "Siemens"}
    for vendor in vendors:
        uses = {k.use for k in VENDOR_KERNELS if k.vendor == vendor}
        assert uses <= {"body", "lung", "bone", "head", "brain"}, vendor
        assert {"body", "lung"} <= uses and uses & {"head", "brain"}, vendor
    assert {"Br40", "Br64", "Qr40", "Bl64", "STANDARD", "LUNG", "FC13", "FC51",  # body, lung
            "H30s", "Hr40", "J70h", "I30f", "UB", "YA", "FC21", "STD+", "EDGE"} <= set(names)


@pytest.mark.parametrize("kernel", VENDOR_KERNELS, ids=lambda k: k.name)
def test_each_entry_is_sourced_or_an_estimate_and_its_window_meets_it(kernel) -> None:
    assert kernel.basis
    assert 0 < kernel.uncertainty <= 0.5
    tags = TAG.findall(kernel.basis)
    assert set(tags) <= set(REFERENCES), tags  # every source it cites is in the reference list
    if kernel.sourced:
        assert kernel.mtf50 and kernel.mtf10 and "measured" in kernel.basis
        assert tags  # a measurement names its reference
    else:
        assert kernel.basis.startswith("ESTIMATE")
    spec = load_response_table()[kernel.name]
    m50, m10, _ = mtf_figures(spec)
    t50, t10 = targets(kernel)
    assert m50 == pytest.approx(t50, rel=0.02) and m10 == pytest.approx(t10, rel=0.02)
    assert spec.uncertainty == kernel.uncertainty and kernel.basis in spec.source


def test_every_reference_is_cited_and_documented() -> None:
    cited = {t for k in VENDOR_KERNELS for t in TAG.findall(k.basis)}
    assert cited == set(REFERENCES)  # no dead reference either
    doc = DOC.read_text(encoding="utf-8")
    for tag in REFERENCES:
        assert f"[{tag}]" in doc, tag


@pytest.mark.parametrize("family", ["Br", "Bl", "H", "Hr", "J", "I"])
def test_sharper_by_number_means_sharper_windows(family: str) -> None:
    table = load_response_table()
    pattern = re.compile(rf"^{family}\d")
    members = sorted((k for k in VENDOR_KERNELS if k.vendor == "Siemens"
                      and pattern.match(k.name)), key=lambda k: k.siemens_number)
    assert len(members) >= 3, family
    m50 = [mtf_figures(table[k.name])[0] for k in members]
    assert m50 == sorted(m50)


def test_names_resolve_as_scanners_write_them_and_unknown_ones_fail() -> None:
    table = KernelAliases.for_domains(load_response_table())
    assert table.resolve("Br40d") == "Br40" and table.resolve("qr44f") == "Qr44"
    assert table.resolve("standard") == "STANDARD" and table.resolve("FC51") == "FC51"
    assert table.resolve("FC51 ") == "FC51"  # Canon pads some names with a space
    assert table.resolve("H30f") == "H30s" and table.resolve("Hr40d") == "Hr40"
    assert table.resolve("J70h") == "J70h" and table.resolve("I40s") == "I40f"
    assert table.resolve("UB") == "UB" and table.resolve("ya") == "YA"
    assert table.resolve("STD+") == "STD+" and table.resolve("Edge") == "EDGE"
    with pytest.raises(KernelError, match="unknown kernel 'FC99'"):
        table.resolve("FC99")


def test_the_documentation_table_is_the_one_the_script_writes(capsys) -> None:
    spec = importlib.util.spec_from_file_location("fit_vendor_kernels",
                                                  ROOT / "scripts" / "fit_vendor_kernels.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.doc_table()
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == len(VENDOR_KERNELS) + 2
    doc = DOC.read_text(encoding="utf-8").splitlines()
    missing = [r for r in rows if r not in doc]
    assert not missing, f"docs/vendor-kernels.md is stale: {missing[:3]}"


def test_the_vendor_kernel_map_maps_onto_the_bundled_models_kernels() -> None:
    mapping = read_kernel_map(EXAMPLES / "vendor-kernel-map.txt")
    assert set(mapping) == {k.name for k in VENDOR_KERNELS}
    table = KernelAliases.for_domains(("B30f", "B50f", "B70f"), mapping)
    assert table.resolve("FC13") == "B30f" and table.resolve("LUNG") == "B70f"


def test_uncertainty_lowers_the_allowed_noise() -> None:
    assert allowed_noise_ratio("B30f", "B70f") == pytest.approx(
        predicted_noise_ratio("B30f", "B70f"))  # the spec kernels are exact
    fc = allowed_noise_ratio("FC13", "FC51")
    assert fc is not None and fc < 0.7 * predicted_noise_ratio("FC13", "FC51")  # type: ignore[operator]


def test_uncalibrated_filter_on_the_real_phantom_is_no_worse_than_identity() -> None:
    """The issue's check: FC13 -> FC51 (soft -> sharp) with the vendor table's estimates, no
    calibration, must not be worse than leaving the image unchanged; FC51 -> FC13 must be
    far better."""
    eng = FilterEngine()
    for ph in ("phantom1", "phantom2"):
        soft, px = _stack(PHANTOM / ph / "FC13")
        sharp, _ = _stack(PHANTOM / ph / "FC51")
        assert _psnr(eng.convert(soft, "FC13", "FC51", px), sharp) > _psnr(soft, sharp) + 0.5
        assert eng.last_limit is not None  # the noise limit acted
        assert _psnr(eng.convert(sharp, "FC51", "FC13", px), soft) > _psnr(sharp, soft) + 6
