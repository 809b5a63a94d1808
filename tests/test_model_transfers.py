"""A site calibration's fitted transfers in a filter_residual model (extension): the base
filter the network corrects, and the filter it runs where it routes, convert a calibrated
pair as `convert --method filter --kernel-table` does (the transfer holds the true target's
low-pass shift; the windows alone do not), in training and in conversion alike."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import example_chest_hu, make_tiny_model

from kernelconv.engines import base_filter_for
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.engines.torch_engine import TorchEngine
from kernelconv.errors import ModelError
from kernelconv.hu import UNIT_ZERO_HU
from kernelconv.kernel_response import KernelTable, transfers_from_json, transfers_to_json
from kernelconv.modelfile import load_model, read_info, save_model

#: a made-up calibration of B70f -> B30f: H(0) = 0.997 (the low-pass shift a real pair
#: shows), a smooth roll-off to 0 at 12 lp/cm
TRANSFER = [{"source": "B70f", "target": "B30f",
             "points": [[0.0, 0.997], [2.0, 0.95], [5.0, 0.45], [8.0, 0.1], [12.0, 0.0]]}]



def with_transfers(path: Path, out: Path, items: object) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    info, weights = load_model(path)
    save_model(out, dataclasses.replace(info, kernel_transfers=items), weights)
    return out


@pytest.fixture(scope="module")
def zero_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """filter_residual with a correction of exactly zero: its output is its base filter's."""
    return make_tiny_model(tmp_path_factory.mktemp("zero") / "zero.safetensors",
                           output="filter_residual", head_scale=None)


def test_transfers_round_trip_through_json() -> None:
    table = transfers_from_json(TRANSFER)
    assert transfers_from_json(transfers_to_json(table)).keys() == table.keys()
    np.testing.assert_array_equal(transfers_from_json(transfers_to_json(table))[("B70f", "B30f")],
                                  table[("B70f", "B30f")])


def test_the_base_filter_converts_a_calibrated_pair_with_its_transfer(
        zero_model: Path, tmp_path: Path) -> None:
    model = with_transfers(zero_model, tmp_path / "cal.safetensors", TRANSFER)
    info = read_info(model)
    base = base_filter_for(info)
    assert base is not None and ("B70f", "B30f") in base.transfers
    hu = example_chest_hu()
    engine = TorchEngine(model, device="cpu")
    reference = FilterEngine(KernelTable(KernelTable.builtin().responses,
                                         transfers_from_json(TRANSFER)))
    expected = np.clip(reference.convert(hu, "B70f", "B30f", 0.7), -1024.0, 3071.0)
    np.testing.assert_allclose(engine.convert(hu, "B70f", "B30f", 0.7), expected, atol=0.01)
    # the windows alone give another image: the transfer is what ran
    plain = np.clip(FilterEngine(noise_limit=False).convert(hu, "B70f", "B30f", 0.7),
                    -1024.0, 3071.0)
    assert np.abs(engine.convert(hu, "B70f", "B30f", 0.7) - plain).max() > 5.0
    # the transfer is part of the derived UIDs (the table digest), the other directions not
    plain_engine = TorchEngine(zero_model, device="cpu")
    assert engine.kernel_table.digest("B70f", "B30f") != \
        plain_engine.kernel_table.digest("B70f", "B30f")
    assert engine.kernel_table.digest("B30f", "B70f") == \
        plain_engine.kernel_table.digest("B30f", "B70f")


def test_malformed_transfers_are_a_model_error(zero_model: Path, tmp_path: Path) -> None:
    bad = [{"source": "B70f", "target": "B30f", "points": [[1.0, 0.9], [0.5, 0.2]]}]
    model = with_transfers(zero_model, tmp_path / "bad.safetensors", bad)
    with pytest.raises(ModelError, match="invalid kernel transfers"):
        TorchEngine(model, device="cpu")


def test_training_base_uses_the_tables_transfer_and_export_stores_it(tmp_path: Path) -> None:
    from kernelconv.training.loop import base_filter

    table = tmp_path / "site.json"
    table.write_text(json.dumps({"kernels": [], "transfers": TRANSFER}))
    x = torch.from_numpy(example_chest_hu()[:1, None] / 2048.0)
    with_fit = base_filter(["B30f", "B70f"], str(table))(
        x, torch.tensor([1]), torch.tensor([0]), [0.7])
    windows = base_filter(["B30f", "B70f"], str(table), transfers=False)(
        x, torch.tensor([1]), torch.tensor([0]), [0.7])
    assert not torch.allclose(with_fit, windows, atol=1e-4)
    reference = FilterEngine(KernelTable({k: KernelTable.builtin().responses[k]
                                          for k in ("B30f", "B70f")},
                                         transfers_from_json(TRANSFER)), noise_limit=False)
    expected = reference.convert_torch(x.double(), ["B70f"], ["B30f"], [0.7],
                                       zero=UNIT_ZERO_HU)
    torch.testing.assert_close(with_fit.double(), expected, atol=1e-5, rtol=0)


def test_onnx_exports_of_other_kernels_are_not_shared(
        zero_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two model files with the same weights but other fitted transfers (a run re-exported
    after a new calibration) get their own ONNX file, and each converts as its torch engine."""
    pytest.importorskip("onnxruntime")
    from kernelconv.engines.onnx_engine import OnnxEngine, onnx_file_for

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    other = [{**TRANSFER[0], "points": [[0.0, 1.0], [2.0, 0.9], [6.0, 0.3], [12.0, 0.0]]}]
    first = with_transfers(zero_model, tmp_path / "a" / "site.safetensors", TRANSFER)
    second = with_transfers(zero_model, tmp_path / "b" / "site.safetensors", other)
    assert onnx_file_for(first) != onnx_file_for(second)
    hu = example_chest_hu()[:1]
    for model in (first, second):
        np.testing.assert_allclose(OnnxEngine(model, "cpu").convert(hu, "B70f", "B30f", 0.7),
                                   TorchEngine(model, device="cpu").convert(hu, "B70f", "B30f",
                                                                            0.7), atol=0.5)
