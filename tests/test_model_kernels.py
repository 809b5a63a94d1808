"""A model's kernels beyond its network's labels (extension): the kernels of its kernel table
(built-in vendor kernels, a calibration it carries) are sources its base filter knows and
targets its filter converts to, instead of a refusal or a fingerprint estimate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    EXAMPLE_CHEST,
    example_chest_hu,
    make_series,
    make_tiny_model,
    output_series_dirs,
    read_all,
    run_cli,
)

from kernelconv.engines import direction_method_id, model_kernels
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.engines.torch_engine import TorchEngine
from kernelconv.kernel_response import KernelTable
from kernelconv.modelfile import read_info, resolve_model


@pytest.fixture(scope="module")
def tiny_filter_residual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default's variant (the filter plus a learned correction), random weights."""
    return make_tiny_model(tmp_path_factory.mktemp("fr") / "tiny-fr.safetensors",
                           output="filter_residual")



def test_a_model_knows_its_labels_first_then_its_tables_kernels(tiny_model: Path) -> None:
    info = read_info(tiny_model)
    kernels = model_kernels(info)
    assert kernels[:len(info.domains)] == tuple(info.domains)
    assert {"B40f", "FC13", "FC51", "L", "B", "UB", "YA"} <= set(kernels)
    assert len(kernels) == len(set(kernels)) == len(KernelTable.builtin().responses)


def test_learnt_windows_keep_a_model_to_its_labels() -> None:
    """unpaired-lw-v1's stored responses are learnt windows (ratios only): mixing them with
    the built-in vendor kernels would convert with a wrong idea of both."""
    info = read_info(resolve_model("unpaired-lw-v1"))
    assert model_kernels(info) == tuple(info.domains)


def test_a_target_without_a_label_is_the_filter_on_the_models_table(tiny_model: Path) -> None:
    hu = example_chest_hu()
    engine = TorchEngine(tiny_model, device="cpu")
    assert "B40f" not in engine.domains and not engine.uses_network("B70f", "B40f")
    reference = FilterEngine(KernelTable.builtin())
    np.testing.assert_array_equal(engine.convert(hu, "B70f", "B40f", 0.7),
                                  reference.convert(hu, "B70f", "B40f", 0.7))
    assert "its network has no B40f label" in engine.describe("B70f", "B40f")
    # the filter's own version is in the UIDs of that direction, not in the network's
    routed_id = direction_method_id(engine, "B70f", "B40f")
    assert routed_id.endswith(engine.route_filter().algorithm_id)
    assert direction_method_id(engine, "B70f", "B30f") == engine.method_id != routed_id


def test_a_vendor_source_goes_through_the_network_on_its_tables_response(
        tmp_path: Path) -> None:
    """FC51 -> B30f: the base filter takes Canon's FC51 from the table. With a correction of
    exactly zero the output is that base filter's, bit for bit, and differs from the base
    filter with any other source response."""
    from kernelconv.engines import base_filter_for

    zero = make_tiny_model(tmp_path / "zero.safetensors", output="filter_residual",
                           head_scale=None)
    hu = example_chest_hu()
    engine = TorchEngine(zero, device="cpu")
    assert engine.uses_network("FC51", "B30f") and engine.correction_is_zero()
    out = engine.convert(hu, "FC51", "B30f", 0.7)
    base = base_filter_for(read_info(zero))
    assert base is not None
    base.add_kernel(KernelTable.builtin().responses["FC51"])
    # through the network's scale (clipped to the paper's window) and back
    expected = np.clip(base.convert(hu, "FC51", "B30f", 0.7), -1024.0, 3071.0)
    np.testing.assert_allclose(out, expected, atol=0.01)
    assert not np.allclose(out, base.convert(hu, "B70f", "B30f", 0.7), atol=1.0)
    assert not np.allclose(out, base.convert(hu, "B50f", "B30f", 0.7), atol=1.0)


def test_convert_to_a_vendor_target_says_the_filter_ran(
        tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    make_series(sorted(EXAMPLE_CHEST.glob("IM*"))[0], src, 2, kernel="B70f")
    rc, out, err = run_cli(["convert", str(src), str(tmp_path / "out"), "--to", "B40f",
                            "--model", str(tiny_model)], capsys)
    assert rc == 0, err
    assert "no network label" in re.sub(r"[│\s]+", " ", out)
    ds = read_all(output_series_dirs(tmp_path / "out")[0])[0]
    assert ds.ConvolutionKernel == "B40f"
    assert "its network has no B40f label" in ds.DerivationDescription
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    series = report["series"][0]
    assert series["status"] == "converted" and series["source_domain"] == "B70f"
    assert "its network has no B40f label" in series["method"]
    # the same pixels as --method filter (the model's table is the built-in one)
    rc, _, err = run_cli(["convert", str(src), str(tmp_path / "filter"), "--to", "B40f",
                          "--method", "filter"], capsys)
    assert rc == 0, err
    for a, b in zip(read_all(output_series_dirs(tmp_path / "out")[0]),
                    read_all(output_series_dirs(tmp_path / "filter")[0]), strict=True):
        np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
        assert a.SOPInstanceUID != b.SOPInstanceUID
    # the written derivation names the filter's version: a changed filter gets new UIDs
    engine = TorchEngine(tiny_model, device="cpu")
    written = read_all(output_series_dirs(tmp_path / "out")[0])[0]
    contribution = written.ContributingEquipmentSequence[-1].ContributionDescription
    assert f"({engine.method_id}+{engine.route_filter().algorithm_id})" in contribution


def test_a_dry_run_says_the_filter_will_run(
        tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    make_series(sorted(EXAMPLE_CHEST.glob("IM*"))[0], src, 2, kernel="B70f")
    rc, out, err = run_cli(["convert", str(src), str(tmp_path / "out"), "--to", "B40f",
                            "--model", str(tiny_model), "--dry-run"], capsys)
    assert rc == 0, err
    assert "no network label" in re.sub(r"[│\s]+", " ", out)
    rc, out, err = run_cli(["convert", str(src), str(tmp_path / "out"), "--to", "B30f",
                            "--model", str(tiny_model), "--dry-run"], capsys)
    assert rc == 0, err
    assert "no network label" not in re.sub(r"[│\s]+", " ", out)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_label_directions_keep_their_method_id_at_every_precision(precision: str) -> None:
    """Only a target outside the labels adds the filter's version: a routed model's label
    directions (network or map-routed) keep the engine's method id, so outputs made before
    kernels beyond the labels existed are still recognised as the same conversion."""
    engine = TorchEngine(resolve_model("resim-fr-v1-routed"), device="cpu", precision=precision)
    for src, dst in (("B70f", "B30f"), ("B30f", "B70f"), ("B40f", "B30f"), ("B40f", "B70f")):
        assert direction_method_id(engine, src, dst) == engine.method_id
    assert direction_method_id(engine, "B70f", "B40f") == \
        f"{engine.method_id}+{engine.route_filter().algorithm_id}"


def test_a_vendor_source_is_taken_from_the_table_not_estimated(
        tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    make_series(sorted(EXAMPLE_CHEST.glob("IM*"))[0], src, 2, kernel="B45f")
    rc, _, err = run_cli(["convert", str(src), str(tmp_path / "out"), "--to", "B30f",
                          "--model", str(tiny_model), "--kernel-check", "off"], capsys)
    assert rc == 0, err
    series = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())["series"][0]
    assert series["source_domain"] == "B45f"
    assert "estimated" not in read_all(output_series_dirs(tmp_path / "out")[0])[0] \
        .DerivationDescription
