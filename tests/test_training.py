"""GGCL training: losses, networks, end-to-end train/export/convert, resume, distributed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import output_series_dirs, run_cli, simulate_into

from kernelconv.nets import Generator, GeneratorConfig
from kernelconv.nets.discriminator import Discriminator, DiscriminatorConfig
from kernelconv.training.losses import (
    LossWeights,
    StarGanLoss,
    ggdr,
    gradient_penalty,
    patch_nce,
)

TINY = {"g_conv_dim": 8, "g_repeat": 1, "d_conv_dim": 4, "d_layers": 7, "crop": 128,
        "n_critic": 2, "ckpt_every": 3, "log_every": 1, "lr_decay_start": 1000}


class _Linear(torch.nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so the GP is (||w|| - 1)^2."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return (x * self.w).sum(dim=(1, 2, 3)), None, None


def test_gradient_penalty_on_a_known_case() -> None:
    torch.manual_seed(0)
    w = torch.randn(1, 1, 4, 4)
    disc = _Linear(w)
    gp = gradient_penalty(disc, torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4))
    assert float(gp.detach()) == pytest.approx((float(w.norm()) - 1.0) ** 2, rel=1e-5)
    gp.backward()
    assert disc.w.grad is not None and disc.w.grad.abs().sum() > 0  # double backward works


def test_patch_nce_rewards_aligned_maps() -> None:
    torch.manual_seed(0)
    key = torch.randn(2, 16, 8, 8)
    aligned = patch_nce(key.clone(), key, n_patches=64, tau=0.07)
    shuffled = patch_nce(torch.randn(2, 16, 8, 8), key, n_patches=64, tau=0.07)
    assert float(aligned) < 0.5
    assert float(shuffled) > 0.5 * math.log(64)
    assert float(ggdr(key, key)) == pytest.approx(0.0, abs=1e-6)
    assert float(ggdr(key, -key)) == pytest.approx(2.0, abs=1e-6)


def test_ggcl_gradient_reaches_only_the_discriminator() -> None:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig(conv_dim=8, n_res=1))
    disc = Discriminator(DiscriminatorConfig(conv_dim=4, feature_channels=gen.feature_channels))
    loss = StarGanLoss(gen, disc, LossWeights())
    x = torch.rand(2, 1, 128, 128) * 2 - 1
    fake, feat = gen(x, torch.tensor([0, 2]), return_feature=True)
    _, _, d_map = disc(fake.detach())
    assert d_map.shape == feat.shape == (2, 16, 64, 64)
    reg = loss.regulariser(d_map, feat)
    reg.backward()
    assert all(p.grad is None for p in gen.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_phases_return_finite_losses_with_gradients() -> None:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig(conv_dim=8, n_res=1))
    disc = Discriminator(DiscriminatorConfig(conv_dim=4, feature_channels=gen.feature_channels))
    for reg in ("ggcl", "ggdr", "none"):
        loss = StarGanLoss(gen, disc, LossWeights(paired=10.0), reg=reg)
        x = torch.rand(2, 1, 128, 128) * 2 - 1
        c, t = torch.tensor([0, 1]), torch.tensor([1, 0])
        d_loss, d_stats = loss.d_step(x, c, t)
        d_loss.backward()
        g_loss, g_stats = loss.g_step(x, c, t, real_target=x.flip(0))
        g_loss.backward()
        assert math.isfinite(float(d_loss.detach())) and math.isfinite(float(g_loss.detach()))
        assert (f"D/{reg}" in d_stats) == (reg != "none")
        assert "G/paired_l1" in g_stats and "G/cyc" in g_stats


def test_discriminator_shapes_for_any_multiple_of_128() -> None:
    disc = Discriminator(DiscriminatorConfig(conv_dim=4, feature_channels=16))
    patch, logits, label_map = disc(torch.zeros(1, 1, 256, 384))
    assert patch.shape == (1, 1, 2, 3) and logits.shape == (1, 3)
    assert label_map.shape == (1, 16, 128, 192)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = simulate_into(tmp_path_factory.mktemp("trainsim"), 2, 31)
    return root


def _config(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**TINY, **extra}))
    return path


def test_train_export_convert_end_to_end(sim: Path, tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path)
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "4"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["export", tmp_path / "run", "--name", "tiny-ggcl", "--models-dir",
                            tmp_path / "models", "--half"], capsys)
    assert code == 0, err
    from kernelconv.modelfile import read_info

    info = read_info(tmp_path / "models" / "tiny-ggcl.safetensors")
    assert info.domains == ["B30f", "B50f", "B70f"]
    assert info.provenance["iterations"] == 4 and info.provenance["weights_dtype"] == "fp16"
    # four iterations of the paper's generator convert to nothing useful: lift the HU check
    code, _, err = run_cli(["convert", sim / "patient-000" / "B70f", tmp_path / "conv", "--to",
                            "B30f", "--model", tmp_path / "models" / "tiny-ggcl.safetensors",
                            "--max-bias", "inf"], capsys)
    assert code == 0, err
    assert len(list(output_series_dirs(tmp_path / "conv")[0].iterdir())) == 2


def test_validation_and_tensorboard_logs(sim: Path, tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path)
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "3", "--val", sim], capsys)
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "run" / "validation.jsonl").read_text()
             .splitlines()]
    assert [x["iteration"] for x in lines] == [3]
    keys = {k for k in lines[0] if k.startswith("val/")}
    assert len(keys) == 18  # 6 directions x (PSNR, SSIM, noise SD ratio)
    assert all(math.isfinite(lines[0][k]) for k in keys)
    assert all(lines[0][k] > 0 for k in keys if k.endswith("noise_ratio"))
    losses = [json.loads(x) for x in (tmp_path / "run" / "losses.jsonl").read_text()
              .splitlines()]
    assert losses and losses[-1]["iteration"] == 3 and "D/cls" in losses[-1]
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100


def test_keep_best_keeps_the_validation_peak(sim: Path, tmp_path: Path, capsys) -> None:
    from kernelconv.modelfile import read_info
    from kernelconv.training.checkpoint import latest_checkpoint, read_checkpoint, validation_score

    cfg = _config(tmp_path, keep_best=True, val_every=1, val_slices=1, d_cls_warmup_iters=2)
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "5", "--val", sim], capsys)
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "run" / "validation.jsonl").read_text()
             .splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2, 3, 4, 5]
    scores = [validation_score(x) for x in lines]
    assert scores[0] == scores[1]  # the D warm-up leaves the generator as it was
    assert len(set(scores[2:])) > 1  # then its score moves between iterations
    # only checkpoints after the generator's first update are candidates
    peak = lines[2 + scores[2:].index(max(scores[2:]))]["iteration"]
    assert peak > 2
    best = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["iteration"] == peak and best["val_score"] == pytest.approx(max(scores[2:]))
    assert latest_checkpoint(tmp_path / "run").name == "ckpt-00000005.pt"  # resume ignores it
    code, _, err = run_cli(["export", tmp_path / "run" / "checkpoints" / "best.pt", "--name",
                            "peak", "--models-dir", tmp_path / "models"], capsys)
    assert code == 0, err
    info = read_info(tmp_path / "models" / "peak.safetensors")
    assert info.provenance["checkpoint"] == "best.pt" and info.provenance["iterations"] == peak
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "noval", "--config", cfg,
                            "--iters", "2"], capsys)
    assert code == 2 and "keep_best needs paired validation data" in err


def test_resume_continues_the_same_run(sim: Path, tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path)
    assert run_cli(["train", "--data", sim, "--out", tmp_path / "a", "--config", cfg,
                    "--iters", "6"], capsys)[0] == 0
    assert run_cli(["train", "--data", sim, "--out", tmp_path / "b", "--config", cfg,
                    "--iters", "3"], capsys)[0] == 0
    assert run_cli(["train", "--data", sim, "--out", tmp_path / "b", "--config", cfg,
                    "--iters", "6", "--resume"], capsys)[0] == 0
    a = torch.load(tmp_path / "a" / "checkpoints" / "ckpt-00000006.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoints" / "ckpt-00000006.pt", weights_only=False)
    for key in ("G", "D"):
        for name, value in a[key].items():
            torch.testing.assert_close(value, b[key][name], rtol=1e-5, atol=1e-6, msg=name)
    assert [p["start"] for p in b["phases"]] == [0]  # more iterations is not a new phase


def test_max_minutes_stops_with_a_checkpoint_and_resume_finishes(sim: Path, tmp_path: Path,
                                                                 capsys) -> None:
    cfg = _config(tmp_path, ckpt_every=1000)
    code, out, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config",
                              cfg, "--iters", "50", "--max-minutes", "0.0001"], capsys)
    assert code == 0, err
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*.pt"))
    assert len(ckpts) == 1 and ckpts[0].name < "ckpt-00000050.pt"  # stopped early, saved
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "50", "--resume"], capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "checkpoints" / "ckpt-00000050.pt").is_file()


def test_generator_warmup_trains_only_the_generator(sim: Path, tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path, paired=True, g_warmup_iters=3, ckpt_every=3)
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "3"], capsys)
    assert code == 0, err
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "ckpt-00000003.pt", weights_only=False)
    assert ckpt["opt_d"]["state"] == {}  # the discriminator never stepped
    assert len(ckpt["opt_g"]["state"]) > 0
    torch.manual_seed(0)  # same initial weights as the run (seed 0)
    gen = Generator(GeneratorConfig(c_dim=3, conv_dim=8, n_res=1))
    moved = [not torch.equal(v, ckpt["G"][k]) for k, v in gen.state_dict().items()
             if k in ckpt["G"] and v.is_floating_point()]
    assert any(moved)
    code, _, err = run_cli(["export", tmp_path / "run", "--name", "warm", "--models-dir",
                            tmp_path / "models"], capsys)
    assert code == 0, err
    from kernelconv.modelfile import read_info

    method = read_info(tmp_path / "models" / "warm.safetensors").provenance["method"]
    assert "paired L1 extension only" in method and "GGCL StarGAN" not in method
    bad = _config(tmp_path, g_warmup_iters=3)  # warm-up without paired data
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "bad", "--config", bad,
                            "--iters", "3"], capsys)
    assert code == 2 and "g_warmup_iters needs paired data" in err


def test_resumed_with_other_settings_the_export_says_what_was_trained(
        sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Warm-up, then the adversarial recipe unpaired with GGDR: both phases in the provenance."""
    warm = _config(tmp_path, paired=True, g_warmup_iters=3, ckpt_every=3)
    assert run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", warm,
                    "--iters", "3"], capsys)[0] == 0
    (tmp_path / "adv").mkdir()
    adv = tmp_path / "adv" / "tiny.json"
    adv.write_text(json.dumps({**TINY, "ckpt_every": 50}))
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", adv,
                            "--iters", "5", "--reg", "ggdr", "--resume"], capsys)
    assert code == 0, err
    state = torch.load(tmp_path / "run" / "checkpoints" / "ckpt-00000005.pt", weights_only=False)
    assert [p["start"] for p in state["phases"]] == [0, 3]
    assert state["phases"][1]["config"]["reg"] == "ggdr"
    assert state["opt_d"]["state"]  # the discriminator stepped in the second phase
    assert run_cli(["export", tmp_path / "run", "--name", "two", "--models-dir",
                    tmp_path / "models"], capsys)[0] == 0
    from kernelconv.modelfile import read_info

    prov = read_info(tmp_path / "models" / "two.safetensors").provenance
    assert prov["method"] == ("StarGAN, regulariser ggdr, 2 adversarial iterations, after 3 "
                              "paired-L1 generator warm-up iterations (extension)")
    assert prov["phases"][0].startswith("iterations 0-3: 3 generator-only paired L1 warm-up")
    assert prov["phases"][1].startswith("iterations 3-5: 2 iterations of StarGAN, regulariser "
                                        "ggdr, unpaired; 128 x 128 crops")


def test_batch_of_one_with_shuffled_targets_is_refused(sim: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, batch_size=1)  # unpaired, shuffle: the target would be the source
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "2"], capsys)
    assert code == 2 and "never asks for another kernel" in err
    assert not (tmp_path / "run").exists()
    ok = _config(tmp_path, batch_size=1, target_sampling="random", ckpt_every=2)
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", ok,
                            "--iters", "2"], capsys)
    assert code == 0, err


@pytest.mark.slow
def test_distributed_training_with_two_cpu_processes(sim: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", "29533", "-m", "kernelconv", "train", "--data", str(sim), "--out",
         str(tmp_path / "run"), "--config", str(cfg), "--iters", "4", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = [json.loads((tmp_path / "run" / f"train-summary.rank{r}.json").read_text())
            for r in range(2)]
    assert sums[0]["g_checksum"] == pytest.approx(sums[1]["g_checksum"], rel=1e-9)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "ckpt-00000004.pt", weights_only=False)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]["sampler"]) == 2


def test_init_starts_a_new_run_from_a_model_or_a_checkpoint(
        sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _config(tmp_path, paired=True, g_warmup_iters=3, ckpt_every=3)
    assert run_cli(["train", "--data", sim, "--out", tmp_path / "base", "--config", base,
                    "--iters", "3"], capsys)[0] == 0
    assert run_cli(["export", tmp_path / "base", "--name", "base", "--models-dir",
                    tmp_path / "models"], capsys)[0] == 0
    model = tmp_path / "models" / "base.safetensors"
    frozen = {**TINY, "lr_g": 0.0, "lr_d": 0.0, "ckpt_every": 2}  # weights must stay as loaded
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "frozen.json").write_text(json.dumps(frozen))
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "ft", "--config",
                            tmp_path / "f" / "frozen.json", "--iters", "2", "--init", model],
                           capsys)
    assert code == 0, err
    from kernelconv.modelfile import load_model, read_info

    info, weights = load_model(model)
    state = torch.load(tmp_path / "ft" / "checkpoints" / "ckpt-00000002.pt", weights_only=False)
    assert state["iteration"] == 2  # a new run: its own count, optimisers and schedule
    for name, value in weights.items():
        torch.testing.assert_close(state["G"][name], value, msg=name)
    assert state["phases"][0]["config"]["init"] == f"model {info.model_id}"
    assert run_cli(["export", tmp_path / "ft", "--name", "ft", "--models-dir",
                    tmp_path / "models"], capsys)[0] == 0
    method = read_info(tmp_path / "models" / "ft.safetensors").provenance["method"]
    assert method.endswith(f"starting from model {info.model_id} (--init, extension)")

    # a checkpoint brings the discriminator too
    ckpt = tmp_path / "base" / "checkpoints" / "ckpt-00000003.pt"
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "ft2", "--config",
                            tmp_path / "f" / "frozen.json", "--iters", "2", "--init", ckpt],
                           capsys)
    assert code == 0, err
    source = torch.load(ckpt, weights_only=False)
    state = torch.load(tmp_path / "ft2" / "checkpoints" / "ckpt-00000002.pt", weights_only=False)
    for name, value in source["D"].items():
        if not name.endswith(("weight_u", "weight_v")):  # spectral norm's power iteration moves
            torch.testing.assert_close(state["D"][name], value, msg=name)

    # settings that contradict the weights, and sources that are not there, are one-line errors
    clash = _config(tmp_path, g_conv_dim=16)
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "bad", "--config", clash,
                            "--iters", "2", "--init", model], capsys)
    assert code == 2 and "has g_conv_dim 8, but the training settings say 16" in err
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "bad", "--iters", "2",
                            "--init", "no-such-model"], capsys)
    assert code == 3 and "no-such-model" in err and "Traceback" not in err
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "bad", "--iters", "2",
                            "--init", tmp_path / "missing.pt"], capsys)
    assert code == 4 and "checkpoint not found" in err
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "bad", "--iters", "2",
                            "--init", tmp_path / "junk.pt"], capsys)
    assert code == 4 and "junk.pt: not a kernelconv training checkpoint" in err
    code, _, err = run_cli(["export", tmp_path / "junk.pt", "--name", "junk", "--models-dir",
                            tmp_path / "models"], capsys)
    assert code == 4 and "junk.pt: not a kernelconv training checkpoint" in err
    assert not (tmp_path / "models" / "junk.safetensors").exists()
    (tmp_path / "ft" / "checkpoints" / "ckpt-00000009.pt").write_bytes(b"\0" * 64)  # damaged
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "ft", "--config",
                            tmp_path / "f" / "frozen.json", "--iters", "12", "--resume"], capsys)
    assert code == 4 and "ckpt-00000009.pt: not a kernelconv training checkpoint" in err
    (tmp_path / "ft" / "checkpoints" / "ckpt-00000009.pt").unlink()
    wider = _config(tmp_path, g_conv_dim=16)  # the run's checkpoint has conv_dim 8
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "ft", "--config", wider,
                            "--iters", "12", "--resume"], capsys)
    assert code == 2 and "trained with other network settings" in err
    assert not (tmp_path / "bad").exists()


def test_runs_that_differ_only_in_the_regulariser_draw_the_same_targets(
        sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GGCL's patch sampling has its own generator: torch's global stream (target kernels,
    gradient-penalty weights) stays the same as without a regulariser, so ablations compare
    like with like."""
    cfg = _config(tmp_path)
    states = {}
    for reg in ("none", "ggcl"):
        assert run_cli(["train", "--data", sim, "--out", tmp_path / reg, "--config", cfg,
                        "--iters", "3", "--reg", reg], capsys)[0] == 0
        state = torch.load(tmp_path / reg / "checkpoints" / "ckpt-00000003.pt",
                           weights_only=False)
        states[reg] = state["rng"]
    assert torch.equal(states["none"]["torch"][0], states["ggcl"]["torch"][0])
    assert states["none"]["sampler"] == states["ggcl"]["sampler"]
    assert not torch.equal(states["none"]["patch"][0], states["ggcl"]["patch"][0])  # GGCL drew


def test_filter_residual_generator_trains_exports_and_keeps_hu(sim: Path, tmp_path: Path,
                                                              capsys) -> None:
    # the HU-preserving variant (extension) through the whole loop: paired warm-up (the base
    # filter inside the loss, differentiable), then adversarial iterations with the cycle
    # pass converting back through the filter; the exported model names its variant
    cfg = _config(tmp_path, g_output="filter_residual", g_highpass_px=3.0, paired=True,
                  g_warmup_iters=2, target_sampling="random")
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "4"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["export", tmp_path / "run", "--name", "tiny-fr", "--models-dir",
                            tmp_path / "models"], capsys)
    assert code == 0, err
    from kernelconv.modelfile import read_info

    info = read_info(tmp_path / "models" / "tiny-fr.safetensors")
    assert info.arch_args["output"] == "filter_residual"
    assert [k["name"] for k in info.kernel_responses] == ["B30f", "B50f", "B70f"]
    assert "HU-preserving generator output 'filter_residual'" in info.provenance["method"]
    code, _, err = run_cli(["convert", sim / "patient-000" / "B70f", tmp_path / "conv", "--to",
                            "B30f", "--model", tmp_path / "models" / "tiny-fr.safetensors"],
                           capsys)
    assert code == 0, err  # passes the HU check with the default limit
    report = json.loads((tmp_path / "conv" / "kernelconv-report.json").read_text())
    assert report["series"][0]["hu_check"]["passed"]


def test_a_site_tables_fitted_transfer_is_trained_on_and_exported(sim: Path, tmp_path: Path,
                                                                  capsys) -> None:
    """--kernel-table with a calibration's transfers: the exported model carries them (its
    base filter converts as it was trained)."""
    from kernelconv.modelfile import read_info

    table = tmp_path / "site.json"
    table.write_text(json.dumps({"kernels": [], "transfers": [
        {"source": "B70f", "target": "B30f",
         "points": [[0.0, 0.997], [2.0, 0.95], [5.0, 0.45], [8.0, 0.1], [12.0, 0.0]]}]}))
    cfg = _config(tmp_path, g_output="filter_residual", g_highpass_px=3.0, paired=True,
                  g_warmup_iters=100, target_sampling="random")
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "2", "--kernel-table", table], capsys)
    assert code == 0, err
    code, _, err = run_cli(["export", tmp_path / "run", "--name", "site-fr", "--models-dir",
                            tmp_path / "models"], capsys)
    assert code == 0, err
    info = read_info(tmp_path / "models" / "site-fr.safetensors")
    assert [(t["source"], t["target"]) for t in info.kernel_transfers] == [("B70f", "B30f")]
    assert info.kernel_transfers[0]["points"][0] == [0.0, 0.997]


def test_a_real_archive_fixes_the_spectral_targets_of_a_paired_run(
        sim: Path, tmp_path: Path, capsys) -> None:
    """spectral_data (extension): the targets come from the archive alone, stay fixed while the
    training batches go by, and the paired warm-up trains on L1 plus the spectral term."""
    from kernelconv.training.checkpoint import latest_checkpoint, read_checkpoint

    archive = simulate_into(tmp_path / "archive", 1, 77)
    cfg = _config(tmp_path, g_output="filter_residual", g_highpass_px=3.0, paired=True,
                  g_warmup_iters=100, target_sampling="random", lambda_spectral=10.0,
                  spectral_data=[str(archive)])
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "3"], capsys)
    assert code == 0, err
    logged = [json.loads(line) for line in (tmp_path / "run" / "losses.jsonl").open()]
    assert all("G/spectral" in e and "G/paired_l1" in e for e in logged)
    state = read_checkpoint(latest_checkpoint(tmp_path / "run"))
    seen = state["spectral_targets"]["seen"]
    from kernelconv.training.loop import SPECTRAL_ARCHIVE_BATCHES

    assert float(seen.max()) <= SPECTRAL_ARCHIVE_BATCHES  # the archive's batches, nothing more
    assert float(seen.max()) > 0
    index = json.loads((tmp_path / "run" / "spectral-cache" / "index.json").read_text())
    assert index["sources"] == [str(archive.resolve())]
    bad = _config(tmp_path, spectral_data=[str(archive)])
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run2", "--config",
                            bad, "--iters", "1"], capsys)
    assert code == 2 and "spectral_data needs lambda_spectral > 0" in err


def test_resuming_with_spectral_data_takes_the_archives_targets(sim: Path, tmp_path: Path,
                                                                 capsys) -> None:
    """A checkpoint whose spectral targets came from the training batches, resumed with
    spectral_data: the archive's targets replace them (they are not silently kept)."""
    from kernelconv.training.checkpoint import latest_checkpoint, read_checkpoint

    archive = simulate_into(tmp_path / "archive", 1, 78)
    base = dict(g_output="filter_residual", g_highpass_px=3.0, paired=True,
                g_warmup_iters=100, target_sampling="random", lambda_spectral=10.0)
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config",
                            _config(tmp_path, **base), "--iters", "3"], capsys)
    assert code == 0, err
    state = read_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert state["spectral_targets"]["source"] == "batches"
    cfg = _config(tmp_path, **base, spectral_data=[str(archive)])
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "6", "--resume"], capsys)
    assert code == 0, err
    state = read_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert state["spectral_targets"]["source"] == f"archive {archive.resolve()}"
    assert float(state["spectral_targets"]["seen"].max()) > 0


def test_a_checkpoint_from_before_fitted_transfers_trained_on_the_windows() -> None:
    """g_base_transfers did not exist before 2026-12-07: such a checkpoint trained its base
    filter on the windows, so resuming it with the transfers is a new phase."""
    from dataclasses import asdict

    from kernelconv.training.checkpoint import same_training
    from kernelconv.training.config import TrainConfig

    old = {k: v for k, v in asdict(TrainConfig()).items() if k != "g_base_transfers"}
    assert not same_training(old, asdict(TrainConfig()))
    assert same_training(old, asdict(TrainConfig(g_base_transfers=False)))


# --------------------------------------------------------- unpaired-training extensions


def test_target_sampling_modes() -> None:
    from kernelconv.training.loop import sample_targets

    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])
    for _ in range(50):
        other = sample_targets(labels, 3, "other")
        assert (other != labels).all() and other.min() >= 0 and other.max() <= 2
        assert sorted(sample_targets(labels, 3, "shuffle").tolist()) == sorted(labels.tolist())
    drawn = torch.cat([sample_targets(labels, 3, "other") for _ in range(300)])
    counts = torch.bincount(drawn, minlength=3).float() / len(drawn)
    assert (counts - 1 / 3).abs().max() < 0.05  # balanced over the kernels
    assert (torch.cat([sample_targets(labels, 3, "random") for _ in range(50)])
            == labels.repeat(50)).any()  # random may ask for the slice's own kernel


def test_one_reconstruction_per_scan_is_an_archive_split() -> None:
    from kernelconv.training.data import one_reconstruction_per_scan

    series = [{"scan": f"s{i}", "study_uid": f"u{i}", "domain": d, "file": f"{i}-{d}"}
              for i in range(9) for d in range(3)]
    kept = one_reconstruction_per_scan(series)
    assert len(kept) == 9 and len({s["scan"] for s in kept}) == 9  # one series per scan
    assert sorted(s["domain"] for s in kept) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # balanced
    partial = [s for s in series if s["domain"] == 2 or s["scan"] != "s0"]
    assert len(one_reconstruction_per_scan(partial)) == 9  # a scan missing its turn's kernel
    # two data folders: every kernel gets its share of each, whatever the keys' order
    two = [{**s, "source": "a" if int(s["scan"][1:]) < 6 else "b"} for s in series
           + [{"scan": f"s{i}", "study_uid": f"u{i}", "domain": d, "file": f"{i}-{d}"}
              for i in range(9, 12) for d in range(3)]]
    kept = one_reconstruction_per_scan(two)
    for source in ("a", "b"):
        domains = sorted(s["domain"] for s in kept if s["source"] == source)
        assert domains == [0, 0, 1, 1, 2, 2], (source, domains)


def test_train_rejects_bad_unpaired_settings(sim: Path, tmp_path: Path, capsys) -> None:
    bad = [({"d_spectral_norm": "half"}, "d_spectral_norm"),
           ({"d_highpass_gain": -1}, "d_highpass_gain"),
           ({"target_sampling": "any"}, "target_sampling"),
           ({"one_kernel_per_scan": True, "paired": True}, "one_kernel_per_scan"),
           ({"g_upsample": "bilinear"}, "g_upsample")]
    for extra, word in bad:
        path = _config(tmp_path, **extra)
        code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "bad-run",
                                "--config", path], capsys)
        assert code == 2 and word in err and "Traceback" not in err
        assert not (tmp_path / "bad-run").exists()


def test_discriminator_classifier_warmup_trains_only_its_domain_head_then_the_recipe(
        sim: Path, tmp_path: Path, capsys) -> None:
    """d_cls_warmup_iters: D's classifier alone first (G untouched), then the adversarial
    recipe; the export names the warm-up and every unpaired extension the run used."""
    cfg = _config(tmp_path, d_cls_warmup_iters=3, ckpt_every=3, target_sampling="other",
                  one_kernel_per_scan=True, d_highpass_gain=50, d_spectral_norm="no_heads",
                  g_output="residual", g_highpass_px=3.0, g_upsample="resize",
                  d_antialias=True)
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "3"], capsys)
    assert code == 0, err
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "ckpt-00000003.pt", weights_only=False)
    assert ckpt["opt_g"]["state"] == {}  # the generator never stepped
    assert len(ckpt["opt_d"]["state"]) > 0
    rows = [json.loads(line) for line in open(tmp_path / "run" / "losses.jsonl")]
    assert all(set(r) == {"iteration", "lr_g", "D/cls"} for r in rows)  # only the class loss
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "run", "--config", cfg,
                            "--iters", "5", "--resume"], capsys)
    assert code == 0, err
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "ckpt-00000005.pt", weights_only=False)
    assert len(ckpt["opt_g"]["state"]) > 0  # after the warm-up the generator trains
    assert run_cli(["export", tmp_path / "run", "--name", "dw", "--models-dir",
                    tmp_path / "models"], capsys)[0] == 0
    from kernelconv.modelfile import read_info

    info = read_info(tmp_path / "models" / "dw.safetensors")
    assert info.arch_args["upsample"] == "resize"
    method = info.provenance["method"]
    assert "2 adversarial iterations, after 3 discriminator-classifier warm-up" in method
    for word in ("high-pass input x50", "spectral norm 'no_heads'", "always another kernel",
                 "one kernel per scan", "generator upsampling 'resize'",
                 "anti-aliased discriminator downsampling"):
        assert word in method, method
    both = _config(tmp_path, d_cls_warmup_iters=3, g_warmup_iters=3, paired=True)
    code, _, err = run_cli(["train", "--data", sim, "--out", tmp_path / "both", "--config",
                            both], capsys)
    assert code == 2 and "d_cls_warmup_iters" in err and "Traceback" not in err


def test_every_bundled_training_config_is_valid() -> None:
    """examples/training/*.json are documented recipes: each must load as it is."""
    from kernelconv.training.config import TrainConfig

    configs = sorted((Path(__file__).resolve().parent.parent / "examples" / "training")
                     .glob("*.json"))
    assert len(configs) >= 10
    for path in configs:
        cfg = TrainConfig().updated(TrainConfig.read_file(path), origin=path.name)
        assert cfg.iters > 0, path
