"""The vendor kernel table: every entry sourced or marked an estimate, windows that meet
their figures, names that resolve, and the uncalibrated filter on the real Canon phantom."""

from __future__ import annotations

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
from kernelconv.vendor_kernels import VENDOR_KERNELS, targets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_every_vendor_needed_is_there_and_names_are_unique() -> None:
    names = [k.name for k in VENDOR_KERNELS]
    assert len(names) == len(set(names))
    assert not set(names) & {k.name for k in BUILTIN_RESPONSES}  # the spec kernels stay
    vendors = {k.vendor for k in VENDOR_KERNELS}
    assert vendors == {"GE", "Philips", "Canon", "Siemens"}
    for vendor in vendors:
        uses = {k.use for k in VENDOR_KERNELS if k.vendor == vendor}
        assert {"body", "lung"} <= uses or {"body", "bone"} <= uses, vendor
    assert {"Br40", "Br64", "Qr40", "Bl64", "STANDARD", "LUNG", "FC13", "FC51"} <= set(names)


@pytest.mark.parametrize("kernel", VENDOR_KERNELS, ids=lambda k: k.name)
def test_each_entry_is_sourced_or_an_estimate_and_its_window_meets_it(kernel) -> None:
    assert kernel.basis
    assert 0 < kernel.uncertainty <= 0.5
    if kernel.sourced:
        assert kernel.mtf50 and kernel.mtf10 and "measured" in kernel.basis
    else:
        assert kernel.basis.startswith("ESTIMATE")
    spec = load_response_table()[kernel.name]
    m50, m10, _ = mtf_figures(spec)
    t50, t10 = targets(kernel)
    assert m50 == pytest.approx(t50, rel=0.02) and m10 == pytest.approx(t10, rel=0.02)
    assert spec.uncertainty == kernel.uncertainty and kernel.basis in spec.source


def test_sharper_by_number_means_sharper_windows() -> None:
    table = load_response_table()
    body = [k for k in VENDOR_KERNELS if k.vendor == "Siemens" and k.name.startswith("Br")]
    m50 = [mtf_figures(table[k.name])[0] for k in sorted(body, key=lambda k: k.siemens_number)]
    assert m50 == sorted(m50)


def test_names_resolve_with_siemens_mode_letters_and_unknown_ones_fail() -> None:
    table = KernelAliases.for_domains(load_response_table())
    assert table.resolve("Br40d") == "Br40" and table.resolve("qr44f") == "Qr44"
    assert table.resolve("standard") == "STANDARD" and table.resolve("FC51") == "FC51"
    with pytest.raises(KernelError, match="unknown kernel 'FC99'"):
        table.resolve("FC99")


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
