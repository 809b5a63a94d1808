"""Kernel windows learnt with the generator (extension ``g_base: learned``): the base filter
they make, how they are exported and read back, and a training run that moves them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli, simulate_into

from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.kernel_response import load_response_table, responses_from_json
from kernelconv.training.learned_windows import STEP_LPCM, LearnedWindows, corner_frequency

DOMAINS = ["B30f", "B50f", "B70f"]


def _noise(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 1, 64, 64, generator=g, dtype=torch.float64) * 100.0


def test_flat_start_is_the_identity_up_to_the_wiener_term() -> None:
    lw = LearnedWindows(DOMAINS, load_response_table(), corner_frequency(0.684), "identity")
    x = _noise()
    y = lw.convert(x, torch.tensor([2, 0, 1]), torch.tensor([0, 2, 2]), [0.684] * 3).detach()
    # W = 1 everywhere: H = 1 / (1 + lambda (f/10)^2), lambda <= 1e-3
    assert float((y - x).abs().max()) < 0.002 * float(x.abs().max())
    assert lw.anchor == "B30f"  # the softest kernel anchors the (ratio-only) windows


def test_table_start_is_the_classical_filter() -> None:
    table = load_response_table()
    lw = LearnedWindows(DOMAINS, table, corner_frequency(0.684), "table")
    engine = FilterEngine({d: table[d] for d in DOMAINS}, noise_limit=False)
    x = _noise(1)
    for src, dst in (("B70f", "B30f"), ("B50f", "B30f"), ("B30f", "B70f")):
        s, t = torch.tensor([DOMAINS.index(src)]), torch.tensor([DOMAINS.index(dst)])
        y = lw.convert(x[:1], s, t, [0.684]).detach()
        ref = engine.convert_torch(x[:1], [src], [dst], [0.684])
        # the windows are tabulated every 0.5 lp/cm: a few per cent of a white-noise image's
        # high frequencies, which the soft -> sharp filter amplifies up to 50 times
        rel = float((y - ref).square().mean().sqrt() / ref.square().mean().sqrt())
        assert rel < 0.05, (src, dst, rel)


def test_exported_windows_convert_exactly_as_trained() -> None:
    table = load_response_table()
    lw = LearnedWindows(DOMAINS, table, corner_frequency(0.5), "identity")
    with torch.no_grad():
        lw.delta.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(3))
    stored = lw.responses_json(table, "test")
    assert [k["name"] for k in stored] == DOMAINS
    anchor = [list(p) for p in stored[0]["tabulated"]]  # type: ignore[union-attr]
    assert anchor == [[i * STEP_LPCM, 1.0] for i in range(len(anchor))]  # keeps its start
    engine = FilterEngine(responses_from_json(json.loads(json.dumps(stored))),
                          noise_limit=False)
    x = _noise(2)
    for i, (src, dst) in enumerate((("B70f", "B30f"), ("B30f", "B50f"), ("B50f", "B70f"))):
        for px in (0.5, 0.9):
            y = lw.convert(x[i:i + 1], torch.tensor([DOMAINS.index(src)]),
                           torch.tensor([DOMAINS.index(dst)]), [px])[0, 0].detach().numpy()
            z = engine.convert(x[i].numpy().astype(np.float32), src, dst, px)[0]
            np.testing.assert_allclose(z, y, atol=1e-3 * float(np.abs(y).max()))


def test_windows_are_differentiable_and_the_roughness_prior_prefers_smooth_curves() -> None:
    lw = LearnedWindows(DOMAINS, load_response_table(), corner_frequency(0.684), "identity")
    assert float(lw.roughness().detach()) == 0.0
    x = _noise(4)
    y = lw.convert(x, torch.tensor([2, 2, 1]), torch.tensor([0, 0, 0]), [0.684] * 3)
    y.square().mean().backward()
    grad = lw.delta.grad
    assert grad is not None
    assert float(grad[0].abs().max()) == 0.0  # the anchor is fixed
    locked = lw.freqs[1:] <= 1.0  # and so is every window up to 1 lp/cm
    assert int(locked.sum()) == 2 and float(grad[:, locked].abs().max()) == 0.0
    assert float(grad[2].abs().sum()) > 0.0  # B70f's window moves
    with torch.no_grad():
        lw.delta[2] = torch.linspace(0.0, 3.0, lw.delta.shape[1], dtype=torch.float64)
    smooth = float(lw.roughness().detach())
    with torch.no_grad():
        lw.delta[2, ::2] += 0.3
    assert float(lw.roughness().detach()) > 10 * smooth + 1e-3


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_into(tmp_path_factory.mktemp("lwsim"), 2, 37)


def test_learned_windows_train_resume_export_and_convert(sim: Path, tmp_path: Path,
                                                        capsys) -> None:
    cfg = tmp_path / "lw.json"
    cfg.write_text(json.dumps({
        "g_conv_dim": 8, "g_repeat": 1, "d_conv_dim": 4, "d_layers": 7, "crop": 128,
        "n_critic": 1, "ckpt_every": 2, "log_every": 1, "lr_decay_start": 1000,
        "g_output": "filter_residual", "g_highpass_px": 3.0, "g_base": "learned",
        "target_sampling": "other", "lr_base": 0.05, "lambda_spectral": 10.0,
        "d_spectral_head": True}))
    args = ["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg]
    code, _, err = run_cli([*args, "--iters", "2"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*args, "--iters", "4", "--resume"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "straight",
                            "--config", cfg, "--iters", "4"], capsys)
    assert code == 0, err
    a = torch.load(tmp_path / "run" / "checkpoints" / "ckpt-00000004.pt", weights_only=False)
    b = torch.load(tmp_path / "straight" / "checkpoints" / "ckpt-00000004.pt",
                   weights_only=False)
    # resumed exactly: the windows, and the running spectra the feature matching aims at
    assert torch.equal(a["base"]["delta"], b["base"]["delta"])
    assert torch.equal(a["spectral_targets"]["mean"], b["spectral_targets"]["mean"])
    assert float(a["base"]["delta"].abs().max()) > 0.05  # four steps at lr 0.05 moved them
    assert len(a["opt_g"]["param_groups"]) == 2
    assert a["opt_g"]["param_groups"][1]["lr"] == pytest.approx(0.05)
    code, _, err = run_cli(["export", tmp_path / "run", "--name", "lw", "--models-dir",
                            tmp_path / "models"], capsys)
    assert code == 0, err
    from kernelconv.modelfile import read_info

    info = read_info(tmp_path / "models" / "lw.safetensors")
    method = info.provenance["method"]
    assert "kernel windows are learnt with it (g_base learned, starting identity)" in method
    assert "spectral feature matching x10.0" in method
    assert "discriminator radial-spectrum head" in method
    windows = LearnedWindows.from_state(DOMAINS, load_response_table(), a["base"])
    stored = {k["name"]: k for k in info.kernel_responses}
    expected = {k["name"]: k for k in windows.responses_json(load_response_table(), "")}
    for d in DOMAINS:
        assert [list(p) for p in stored[d]["tabulated"]] == \
            [list(p) for p in expected[d]["tabulated"]]
        assert stored[d]["source"].startswith("learnt from unpaired data")
    code, _, err = run_cli(["convert", sim / "patient-000" / "B70f", tmp_path / "conv", "--to",
                            "B30f", "--model", tmp_path / "models" / "lw.safetensors"], capsys)
    assert code == 0, err


def test_learned_windows_need_the_filter_residual_generator(sim: Path, tmp_path: Path,
                                                           capsys) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"g_output": "residual", "g_highpass_px": 3.0,
                               "g_base": "learned"}))
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "1"], capsys)
    assert code == 2 and "g_base learned needs g_output filter_residual" in err
    assert not (tmp_path / "run").exists()


def test_spectral_feature_matching_learns_a_kernel_pair_from_unpaired_noise() -> None:
    """Two 'kernels' on white noise, never paired: sharp (the noise itself) and soft (the
    noise through a Gaussian roll-off). Learnt windows trained only by the generator's spectral
    feature matching (lambda_spectral) recover the soft kernel's transfer from separate draws."""
    from kernelconv.training.losses import SpectralTargets

    torch.manual_seed(0)
    px = 0.684
    f = torch.from_numpy(
        np.hypot(np.fft.fftfreq(64, px)[:, None], np.fft.rfftfreq(64, px)[None, :]) * 10.0)
    soft_h = torch.exp(-((f / 4.0) ** 2))  # lp/cm

    def draw(n: int, soft: bool) -> torch.Tensor:
        x = torch.randn(n, 1, 64, 64, dtype=torch.float64) * 0.02
        return torch.fft.irfft2(torch.fft.rfft2(x) * soft_h, s=(64, 64)) if soft else x

    table = {d: load_response_table()[d] for d in ("B30f", "B70f")}
    lw = LearnedWindows(["B30f", "B70f"], table, corner_frequency(px), "identity")
    targets = SpectralTargets(2, momentum=0.05)
    opt = torch.optim.Adam(lw.parameters(), lr=0.05)
    for _ in range(150):
        for label in (0, 1):
            targets.update(draw(4, label == 0).float(), torch.full((4,), label), [px] * 4)
        x = draw(4, soft=False)
        fake = lw.convert(x, torch.ones(4, dtype=torch.long), torch.zeros(4, dtype=torch.long),
                          [px] * 4)
        loss = targets.loss(fake.float(), torch.zeros(4, dtype=torch.long), [px] * 4)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the pair's transfer from the learnt windows, as an exported model's filter reads it
    h = FilterEngine(lw.responses(table, "test"), noise_limit=False).transfer("B70f", "B30f",
                                                            np.array([1.0, 3.0, 5.0, 6.5]))
    truth = np.exp(-((np.array([1.0, 3.0, 5.0, 6.5]) / 4.0) ** 2))
    np.testing.assert_allclose(h, truth, rtol=0.25)
    zero = torch.zeros(4, dtype=torch.long)
    assert float(targets.loss(draw(4, True).float(), zero, [px] * 4)) < 0.01
    assert float(targets.loss(draw(4, False).float(), zero, [px] * 4)) > 0.1


BUNDLED = Path(__file__).resolve().parent.parent / "models" / "unpaired-lw-v1.safetensors"


def test_bundled_unpaired_model_converts_unseen_patients_toward_the_target(
        sim: Path, tmp_path: Path, capsys) -> None:
    """The shipped unpaired model (models/unpaired-lw-v1.md): trained without any pair, its
    learnt windows convert a simulated patient it never saw closer to the true other kernel
    than leaving it unchanged, in both directions, and keep local mean HU (convert's check)."""
    from kernelconv.dicom.dataset import read_hu_slices
    from kernelconv.engines.torch_engine import TorchEngine
    from kernelconv.evaluation.metrics import psnr
    from kernelconv.modelfile import read_info

    info = read_info(BUNDLED)
    assert "g_base learned" in info.provenance["method"]
    assert "one kernel per scan" in info.provenance["method"]
    assert not info.provenance["config"]["paired"]
    engine = TorchEngine(BUNDLED, "cpu")
    assert engine.correction_is_zero()  # the learnt windows alone: converts at filter speed
    hu = {k: np.stack(read_hu_slices(sorted((sim / "patient-000" / k).iterdir()))[0])
          for k in ("B30f", "B70f")}
    for src, dst in (("B70f", "B30f"), ("B30f", "B70f")):
        out = engine.convert(hu[src], src, dst)
        assert psnr(out, hu[dst]) > psnr(hu[src], hu[dst]) + 3.0, (src, dst)
    code, _, err = run_cli(["convert", sim / "patient-000" / "B70f", tmp_path / "conv", "--to",
                            "B30f", "--model", BUNDLED], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "conv" / "kernelconv-report.json").read_text())
    assert report["series"][0]["hu_check"]["passed"]
