"""`kernelconv calibrate` and the calibrated / noise-limited filter, on real scanner pairs (the
Canon phantom in examples/data) and on simulated pairs whose true kernels are known."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import output_series_dirs, run_cli, simulate_into

from kernelconv.calibration import collect_pairs
from kernelconv.calibration.fit import METHOD, Accumulator, accumulate, solve
from kernelconv.calibration.pairs import PairingError, explicit_pair
from kernelconv.calibration.table import fit_arrays
from kernelconv.dicom.dataset import decode_hu
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.errors import EXIT_INPUT, EXIT_USAGE
from kernelconv.evaluation.metrics import psnr
from kernelconv.kernel_response import (
    BUILTIN_RESPONSES,
    load_response_table,
    load_transfers,
    predicted_noise_ratio,
)
from kernelconv.noise import flat_tiles, measure_noise

PHANTOM = Path(__file__).resolve().parent.parent / "examples" / "data" / "canon-phantom"


def _stack(folder: Path) -> tuple[np.ndarray, float]:
    items = []
    for p in folder.iterdir():
        ds = pydicom.dcmread(p)
        items.append((float(ds.ImagePositionPatient[2]), decode_hu(ds, p)[1][0]))
    items.sort(key=lambda t: t[0])
    return np.stack([a for _, a in items]).astype(np.float64), float(ds.PixelSpacing[0])


def _psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([psnr(np.clip(p, -1024, 3071), np.clip(r, -1024, 3071))
                          for p, r in zip(pred, ref, strict=True)]))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_into(tmp_path_factory.mktemp("calsim"), 2, 23) / "patient-000"


def test_phantom_pairs_are_found_although_their_uids_differ() -> None:
    pairs, notes = collect_pairs([PHANTOM], [])
    assert len(pairs) == 1, notes
    [pair] = pairs
    assert set(pair.kernels) == {"FC13", "FC51"}
    assert len(pair.slices) == 4
    assert "UIDs differ" in pair.matched_by
    for a, b in pair.slices:
        assert a.position == pytest.approx(b.position)


def test_explicit_pair_checks_positions_and_kernels(tmp_path: Path) -> None:
    pair = explicit_pair(PHANTOM / "phantom1" / "FC51", PHANTOM / "phantom1" / "FC13")
    assert pair.kernels == ("FC51", "FC13") and len(pair.slices) == 2
    with pytest.raises(PairingError, match="no slice positions in common"):
        explicit_pair(PHANTOM / "phantom1" / "FC51", PHANTOM / "phantom2" / "FC13")
    with pytest.raises(PairingError, match="both series have kernel FC51"):
        explicit_pair(PHANTOM / "phantom1" / "FC51", PHANTOM / "phantom2" / "FC51")


def test_sim_fit_recovers_the_true_window_ratio(sim: Path) -> None:
    """On the simulator the kernels are known: both directions' direct fits must find
    W_B30f / W_B70f and its inverse, with H(0) = 1 (a true kernel change). The plain least
    squares, without the HU-check region constraint, does not: its low frequencies absorb the
    clipping of the sharp image's air and lung noise at -1024 HU and move the local mean HU of
    lung by several HU, which the HU check would refuse."""
    x, px = _stack(sim / "B70f")
    y, _ = _stack(sim / "B30f")
    fits, noise, counts = fit_arrays([("B70f", "B30f", x, y, px)])
    down, up = fits[("B70f", "B30f")], fits[("B30f", "B70f")]
    assert down.method == up.method == METHOD
    assert counts == {("B30f", "B70f"): 2}
    assert 5.0 < noise[0].ratio < 7.5 and noise[0].sharp == "B70f"
    table = {k.name: k for k in BUILTIN_RESPONSES}
    f = np.linspace(0.5, 6.0, 12)
    true = table["B30f"].window(f) / table["B70f"].window(f)
    np.testing.assert_allclose(down(f), true, rtol=0.05)
    np.testing.assert_allclose(up(f), 1.0 / true, rtol=0.05)
    assert abs(down.h[0] - 1.0) < 0.005 and abs(up.h[0] - 1.0) < 0.005
    assert down.points()[0][0] == 0.0
    for shift in down.region_shift.values():  # held to the true target's on these slices
        assert abs(shift["fitted_hu"] - shift["true_hu"]) < 0.2
    a, b = Accumulator(), Accumulator()
    for i in range(len(x)):
        accumulate(a, b, x[i], y[i], px)
    plain = solve(a, "B70f", "B30f", region_weight=0.0)
    lung = plain.region_shift["lung"]
    assert abs(lung["fitted_hu"] - lung["true_hu"]) > 3.0


def test_calibrate_cli_writes_a_table_the_filter_and_simulate_read(tmp_path: Path,
                                                                   capsys) -> None:
    table = tmp_path / "site.json"
    code, out, err = run_cli(["calibrate", "--pair", PHANTOM / "phantom1" / "FC51",
                              PHANTOM / "phantom1" / "FC13", "--out", table,
                              "--plot", tmp_path / "site.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "site.png").stat().st_size > 10_000
    data = json.loads(table.read_text())
    assert data["format"] == "kernelconv-kernel-table"
    assert {(t["source"], t["target"]) for t in data["transfers"]} == {("FC51", "FC13"),
                                                                        ("FC13", "FC51")}
    fig = {r["kernel"]: r for r in data["calibration"]["figures"]}
    assert fig["FC51"]["mtf50_lpcm"] > fig["FC13"]["mtf50_lpcm"]
    assert 3.0 < fig["FC51"]["noise_ratio"] < 4.5  # measured FC51 / FC13 noise
    assert "FC51" in out and "MTF50" in out
    responses = load_response_table(table)
    assert {"FC13", "FC51", "B30f"} <= set(responses)
    assert set(load_transfers(table)) == {("FC51", "FC13"), ("FC13", "FC51")}
    # convert the OTHER phantom with the calibration: both directions beat identity
    for src, dst, margin in (("FC51", "FC13", 12.0), ("FC13", "FC51", 5.0)):
        out_dir = tmp_path / f"out-{dst}"
        code, _, err = run_cli(["convert", PHANTOM / "phantom2" / src, out_dir, "--to", dst,
                                "--method", "filter", "--kernel-table", table], capsys)
        assert code == 0, err
        [series] = output_series_dirs(out_dir)
        pred, _ = _stack(series)
        ref, _ = _stack(PHANTOM / "phantom2" / dst)
        x, _ = _stack(PHANTOM / "phantom2" / src)
        assert _psnr(pred, ref) > _psnr(x, ref) + margin
        ds = pydicom.dcmread(next(series.iterdir()))
        assert ds.ConvolutionKernel == dst
    # the simulator reconstructs with the calibrated kernels
    code, _, err = run_cli(["simulate", tmp_path / "sim", "--slices", "1", "--kernels",
                            "FC13,FC51", "--kernel-table", table], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "sim" / "patient-000").iterdir()
                  if p.is_dir()) == ["FC13", "FC51"]


def test_calibrate_errors_are_one_line_with_exit_codes(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["calibrate", "--out", tmp_path / "t.json"], capsys)
    assert code == EXIT_USAGE and "PAIRS" in err
    one = tmp_path / "one"
    shutil.copytree(PHANTOM / "phantom1" / "FC51", one)
    code, _, err = run_cli(["calibrate", one, "--out", tmp_path / "t.json"], capsys)
    assert code == EXIT_INPUT and "no pair" in err and "Traceback" not in err
    assert not (tmp_path / "t.json").exists()
    code, _, err = run_cli(["calibrate", "--pair", PHANTOM / "phantom1" / "FC51",
                            PHANTOM / "phantom2" / "FC13", "--out", tmp_path / "t.json"], capsys)
    assert code == EXIT_INPUT and "no slice positions in common" in err
    assert len(err.strip().splitlines()) == 1


def test_kernel_table_needs_the_filter(tmp_path: Path, capsys) -> None:
    table = tmp_path / "t.json"
    table.write_text("[]")
    code, _, err = run_cli(["convert", PHANTOM / "phantom1" / "FC51", tmp_path / "o", "--to",
                            "B30f", "--kernel-table", table, "--from", "B70f"], capsys)
    assert code == EXIT_USAGE and "--method filter" in err


def test_soft_to_sharp_noise_limit_caps_the_output_noise() -> None:
    """FC13 read as B30f -> B70f: the plain filter amplifies the input's noise beyond what
    B70f has relative to B30f; the limited one stays at the windows' predicted ratio."""
    x, px = _stack(PHANTOM / "phantom2" / "FC13")
    tiles = flat_tiles(x, px)
    sd_in = measure_noise(x, px, tiles).sd  # type: ignore[union-attr]
    allowed = predicted_noise_ratio("B30f", "B70f")
    assert allowed is not None
    plain = FilterEngine(noise_limit=False).convert(x, "B30f", "B70f", px)
    limited_engine = FilterEngine()
    limited = limited_engine.convert(x, "B30f", "B70f", px)
    ratio_plain = measure_noise(plain, px, tiles).sd / sd_in  # type: ignore[union-attr]
    ratio_limited = measure_noise(limited, px, tiles).sd / sd_in  # type: ignore[union-attr]
    assert ratio_plain > 1.1 * allowed
    assert ratio_limited <= 1.03 * allowed
    assert limited_engine.last_limit and limited_engine.last_limit["lambda"] > 1e-3
    # sharp -> soft is never limited, and mean HU stays (H(0) = 1)
    soft = limited_engine.convert(x, "B70f", "B30f", px)
    assert limited_engine.last_limit is None
    inside = x > -2000  # the reconstruction circle
    assert abs(float(np.mean(soft[inside] - x[inside]))) < 1.0


def test_out_of_field_padding_is_kept_and_does_not_ring() -> None:
    x, px = _stack(PHANTOM / "phantom1" / "FC51")
    pad = x <= -2000
    assert pad.mean() > 0.1  # the phantom's exports carry -2048 outside the field
    eng = FilterEngine()
    out = eng.convert(x, "B70f", "B30f", px)
    assert np.array_equal(out[pad], x[pad])
    filled = eng.convert(np.where(pad, -1024.0, x), "B70f", "B30f", px)
    np.testing.assert_allclose(out[~pad], filled[~pad], atol=1e-3)


def test_tabulated_windows_validate(tmp_path: Path) -> None:
    from kernelconv.errors import UsageError

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "X1", "cutoff": 3.0, "order": 1.0,
                                "tabulated": [[1.0, 1.0], [2.0, 0.5]]}]))
    with pytest.raises(UsageError, match="starts at f = 0"):
        load_response_table(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"kernels": [{"name": "X1", "cutoff": 3.0, "order": 1.0,
                                             "tabulated": [[0.0, 2.0], [4.0, 1.0]]}]}))
    w = load_response_table(good)["X1"].window(np.array([0.0, 2.0, 4.0, 9.0]))
    np.testing.assert_allclose(w, [1.0, 0.75, 0.5, 0.5])


def test_site_fine_tune_maps_the_models_labels_onto_the_sites_kernels(tmp_path: Path,
                                                                       capsys) -> None:
    """`train --init MODEL --kernels FC13=B30f,FC51=B70f --paired --kernel-table SITE`: the
    phantom's two kernels pair although their UIDs differ, each new label starts as the
    named source label, the base filter and the exported model use the site's table."""
    import torch
    from helpers import make_tiny_model

    from kernelconv.modelfile import load_model, read_info

    source = make_tiny_model(tmp_path / "src.safetensors", output="filter_residual",
                             highpass_px=3.0)
    table = tmp_path / "site.json"
    assert run_cli(["calibrate", "--pair", PHANTOM / "phantom1" / "FC51",
                    PHANTOM / "phantom1" / "FC13", "--out", table], capsys)[0] == 0
    cfg = tmp_path / "ft.json"
    cfg.write_text(json.dumps({"crop": 128, "batch_size": 2, "lr_g": 0.0, "paired": True,
                               "g_warmup_iters": 100, "target_sampling": "random",
                               "d_conv_dim": 4, "d_layers": 7, "ckpt_every": 2}))
    code, _, err = run_cli(["train", "--data", PHANTOM / "phantom1", "--out", tmp_path / "run",
                            "--config", cfg, "--iters", "2", "--init", source, "--kernels",
                            "FC13=B30f,FC51=B70f", "--kernel-table", table], capsys)
    assert code == 0, err
    _, weights = load_model(source)
    state = torch.load(tmp_path / "run" / "checkpoints" / "ckpt-00000002.pt",
                       weights_only=False)
    w_old, w_new = weights["encoder.0.weight"], state["G"]["encoder.0.weight"]
    assert w_new.shape[1] == w_old.shape[1] - 1  # 3 labels -> 2
    torch.testing.assert_close(w_new[:, :2], w_old[:, :2])  # image and base channels
    torch.testing.assert_close(w_new[:, 2], w_old[:, 2])  # FC13 <- B30f
    torch.testing.assert_close(w_new[:, 3], w_old[:, 4])  # FC51 <- B70f
    assert state["domains"] == ["FC13", "FC51"]
    assert run_cli(["export", tmp_path / "run", "--name", "site", "--models-dir",
                    tmp_path / "models"], capsys)[0] == 0
    info = read_info(tmp_path / "models" / "site.safetensors")
    assert info.domains == ["FC13", "FC51"]
    assert {r["name"] for r in info.kernel_responses} == {"FC13", "FC51"}
    assert all(r["tabulated"] for r in info.kernel_responses)  # the site's calibration
    code, _, err = run_cli(["convert", PHANTOM / "phantom2" / "FC51", tmp_path / "out", "--to",
                            "FC13", "--model", tmp_path / "models" / "site.safetensors",
                            "--max-bias", "inf"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "--data", PHANTOM / "phantom1", "--out", tmp_path / "bad",
                            "--config", cfg, "--iters", "2", "--init", source, "--kernels",
                            "FC13=B99f,FC51=B70f"], capsys)
    assert code == 2 and "has no kernel B99f (it has B30f, B50f, B70f)" in err


def test_listen_takes_the_kernel_table_from_its_config(tmp_path: Path) -> None:
    from kernelconv.engines.select import select_engine
    from kernelconv.pacs.config import ListenConfig

    table = tmp_path / "site.json"
    table.write_text(json.dumps({"kernels": [{"name": "SITE1", "cutoff": 3.0, "order": 2.0,
                                              "sharpness": 20}]}))
    cfg = ListenConfig().updated({"to": "SITE1", "method": "filter",
                                  "kernel_table": str(table)}, "config.json")
    spec = cfg.engine_spec()
    assert spec.kernel_table == table
    selected = select_engine(spec)
    assert "SITE1" in selected.domains and str(table) in selected.owner
    engine = selected.factory()
    assert "site-" in engine.method_id  # another table, other derived UIDs
