"""Per-direction use (extension): a model runs its noise-limited filter, not its network, in
the directions where an evaluation showed the network does not beat the filter."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    EXAMPLE_CHEST,
    example_chest_hu,
    make_series,
    output_series_dirs,
    read_all,
    run_cli,
)

from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.engines.torch_engine import TorchEngine
from kernelconv.errors import ModelError
from kernelconv.modelfile import read_info, resolve_model


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled default's weights, routed to the filter in every sharpening direction."""
    from kernelconv.training.export import route_installed_model

    folder = tmp_path_factory.mktemp("routed")
    return route_installed_model(resolve_model("resim-fr-v1"), "routed", folder,
                                 ("sharpening",))



def test_export_writes_the_map_and_keeps_the_weights(routed: Path) -> None:
    info = read_info(routed)
    original = read_info(resolve_model("resim-fr-v1"))
    assert info.weights_sha256 == original.weights_sha256
    assert info.direction_use == {
        "B30f->B50f": "filter", "B30f->B70f": "filter", "B50f->B70f": "filter",
        "B50f->B30f": "network", "B70f->B30f": "network", "B70f->B50f": "network"}
    assert info.provenance["direction_use_from"] == original.model_id


def test_routed_directions_are_the_filter_and_the_others_the_network(routed: Path) -> None:
    hu = example_chest_hu()
    plain = TorchEngine(resolve_model("resim-fr-v1"), device="cpu")
    engine = TorchEngine(routed, device="cpu")
    reference = FilterEngine(engine.kernel_table)
    sharpened = engine.convert(hu, "B30f", "B70f", 0.7)
    np.testing.assert_array_equal(sharpened, reference.convert(hu, "B30f", "B70f", 0.7))
    assert not np.array_equal(sharpened, plain.convert(hu, "B30f", "B70f", 0.7))
    # smoothing: the network, exactly as the unrouted model
    np.testing.assert_array_equal(engine.convert(hu, "B70f", "B30f", 0.7),
                                  plain.convert(hu, "B70f", "B30f", 0.7))
    assert engine.uses_network("B70f", "B30f") and not engine.uses_network("B30f", "B70f")


def test_a_source_outside_the_domains_follows_its_kind_of_direction(routed: Path) -> None:
    import dataclasses

    from kernelconv.kernel_response import builtin_table

    engine = TorchEngine(routed, device="cpu")
    # as convert adds a kernel it estimated from a series' images
    engine.add_kernel(dataclasses.replace(builtin_table()["B40f"], name="B40f"))
    assert not engine.uses_network("B40f", "B70f")  # sharpening: every listed one is filter
    assert engine.uses_network("B40f", "B30f")  # smoothing: every listed one is network
    assert "runs the filter for B40f -> B70f" in engine.describe("B40f", "B70f")


def test_the_map_is_in_the_method_id_so_outputs_never_share_uids(routed: Path) -> None:
    plain = TorchEngine(resolve_model("resim-fr-v1"), device="cpu")
    engine = TorchEngine(routed, device="cpu")
    assert engine.method_id.startswith(plain.method_id.split("@")[0].replace("resim-fr-v1",
                                                                                "routed"))
    assert "+use-" in engine.method_id and "+use-" not in plain.method_id


def test_convert_writes_what_ran_into_the_files_and_the_report(
        routed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    make_series(sorted(EXAMPLE_CHEST.glob("IM*"))[0], src, 2, kernel="B30f")
    rc, _, err = run_cli(["convert", str(src), str(tmp_path / "out"), "--to", "B70f",
                          "--model", str(routed), "--kernel-check", "off"], capsys)
    assert rc == 0, err
    ds = read_all(output_series_dirs(tmp_path / "out")[0])[0]
    assert "runs the filter for B30f -> B70f" in ds.DerivationDescription
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    assert "runs the filter for B30f -> B70f" in report["series"][0]["method"]


def test_a_bad_map_in_a_model_file_is_refused_by_name(routed: Path, tmp_path: Path) -> None:
    blob = routed.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = json.loads(header["__metadata__"]["kernelconv"])
    meta["direction_use"] = {"B30f->B99f": "filter"}
    header["__metadata__"]["kernelconv"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + n:])
    with pytest.raises(ModelError, match="B30f->B99f"):
        read_info(bad)


def test_export_refuses_an_unknown_direction(routed: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(["export", "resim-fr-v1", "--name", "x", "--use-filter",
                            "B30f->FC13", "--models-dir", str(tmp_path)], capsys)
    assert rc != 0 and "B30f->FC13" in out + err and "Traceback" not in out + err
    assert not (tmp_path / "x.safetensors").exists()


def test_an_unlisted_direction_between_model_kernels_runs_the_network(tmp_path: Path) -> None:
    from kernelconv.modelfile import load_model, save_model

    info, state = load_model(resolve_model("resim-fr-v1"))
    info.name, info.direction_use = "partial", {"B30f->B70f": "filter"}
    path = save_model(tmp_path / "partial.safetensors", info, state).path
    assert path is not None
    engine = TorchEngine(path, device="cpu")
    assert not engine.uses_network("B30f", "B70f")
    assert engine.uses_network("B50f", "B70f")  # not in the map: the network, as documented


def test_routed_uids_carry_the_filters_own_version(routed: Path) -> None:
    engine = TorchEngine(routed, device="cpu")
    assert engine.method_id.endswith(FilterEngine().algorithm_id)


def test_export_refuses_a_route_the_filter_cannot_run(tmp_path: Path) -> None:
    """A model whose kernels have no response anywhere (names the tables do not know)."""
    from kernelconv.errors import InputError
    from kernelconv.modelfile import load_model, save_model
    from kernelconv.training.export import route_installed_model

    info, state = load_model(resolve_model("sim-paired-v1"))
    info.name, info.domains = "k", ["K1", "K2", "K3"]
    info.domain_sharpness = {"K1": 1.0, "K2": 2.0, "K3": 3.0}
    src = save_model(tmp_path / "k.safetensors", info, state).path
    assert src is not None
    with pytest.raises(InputError, match="no response for K1"):
        route_installed_model(src, "k-routed", tmp_path, ("K1->K3",))
    assert not (tmp_path / "k-routed.safetensors").exists()


def test_a_refused_routed_series_still_says_what_ran(
        routed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import kernelconv.pipeline as pipeline
    from kernelconv.errors import KernelconvError

    def refuse(*args: object, **kwargs: object) -> None:
        raise KernelconvError("refused by the test")

    monkeypatch.setattr(pipeline, "convert_series", refuse)
    src = tmp_path / "in"
    make_series(sorted(EXAMPLE_CHEST.glob("IM*"))[0], src, 2, kernel="B30f")
    rc, _, _ = run_cli(["convert", str(src), str(tmp_path / "out"), "--to", "B70f",
                        "--model", str(routed)], capsys)
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    (series,) = report["series"]
    assert rc == 1 and series["status"] == "failed"
    assert "runs the filter for B30f -> B70f" in series["method"]


def test_the_bundled_default_is_resim_fr_v1_routed_by_measurement() -> None:
    """The default since issue 27: resim-fr-v1's weights, its network sharp -> soft, the
    noise-limited filter soft -> sharp (its card gives the measurement)."""
    from kernelconv.modelfile import default_model_name

    assert default_model_name() == "resim-fr-v1-routed"
    info = read_info(resolve_model("resim-fr-v1-routed"))
    assert info.weights_sha256 == read_info(resolve_model("resim-fr-v1")).weights_sha256
    assert {k for k, v in info.direction_use.items() if v == "filter"} == {
        "B30f->B50f", "B30f->B70f", "B50f->B70f"}
    hu = example_chest_hu()
    engine = TorchEngine(resolve_model("resim-fr-v1-routed"), device="cpu")
    plain = TorchEngine(resolve_model("resim-fr-v1"), device="cpu")
    np.testing.assert_array_equal(engine.convert(hu, "B50f", "B30f", 0.7),
                                  plain.convert(hu, "B50f", "B30f", 0.7))
    np.testing.assert_array_equal(engine.convert(hu, "B50f", "B70f", 0.7),
                                  FilterEngine(engine.kernel_table).convert(hu, "B50f", "B70f",
                                                                            0.7))
