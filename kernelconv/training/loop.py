"""The GGCL training loop: schedule, optimisers, distributed runs, logging.

Settings live in :mod:`kernelconv.training.config`, checkpoints in
:mod:`kernelconv.training.checkpoint`; the loss object (:mod:`kernelconv.training.losses`) owns
the phases.

Defaults reproduce the paper: Adam (lr 1e-4, betas 0.5/0.999), batch 2, n_critic 5, WGAN-GP,
lambda_cls 1, lambda_cyc 10, GGCL lambda 2 with 64 patches and tau 0.07, 400k iterations on full
512 x 512 slices, target labels a shuffle of the batch's own labels. The learning rate decays
linearly to zero over the second half of the run (the reference's decay is a no-op).

Distributed: under torchrun each rank draws its own batches and gradients are averaged across
ranks with all_reduce after every backward pass (gloo on CPU, nccl on GPU). This is DDP's
arithmetic without its hooks, which do not see the gradient-penalty double backward.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from kernelconv.errors import KernelconvError, UsageError
from kernelconv.hu import UNIT_ZERO_HU
from kernelconv.nets.discriminator import Discriminator, DiscriminatorConfig
from kernelconv.nets.generator import Generator, GeneratorConfig
from kernelconv.training.checkpoint import (
    best_score,
    latest_checkpoint,
    load_states,
    read_checkpoint,
    same_training,
    save_checkpoint,
    training_phases,
    validation_score,
)
from kernelconv.training.config import TrainConfig
from kernelconv.training.data import SliceSampler, build_cache
from kernelconv.training.losses import LossWeights, SpectralTargets, StarGanLoss

if TYPE_CHECKING:
    from kernelconv.training.warmstart import InitSource


def _dist() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _average_gradients(module: torch.nn.Module, world: int) -> None:
    if world <= 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


def _lr_factor(cfg: TrainConfig, it: int) -> float:
    start = cfg.lr_decay_start if cfg.lr_decay_start is not None else cfg.iters // 2
    if it < start or cfg.iters <= start:
        return 1.0
    return max(0.0, 1.0 - (it - start) / (cfg.iters - start))


@dataclass
class TrainResult:
    iterations: int
    seconds: float
    checkpoint: Path | None
    g_checksum: float


def train(
    cfg: TrainConfig,
    data_dirs: list[Path],
    run_dir: Path,
    device: str = "auto",
    resume: bool = False,
    on_progress: Callable[[int, int, dict[str, float]], None] = lambda i, n, s: None,
    val_dir: Path | None = None,
    max_seconds: float | None = None,
    init: InitSource | None = None,
) -> TrainResult:
    """Train (or resume) a run in ``run_dir``; returns where it ended.

    With ``max_seconds`` the run checkpoints and stops after that much wall time (this call's),
    so a long run can be done in bounded pieces with ``resume``. ``init`` (``--init``) gives
    a new run its starting weights; a resumed run ignores it.
    """
    rank, world, local_rank = _dist()
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if cfg.amp != "none" and dev.type != "cuda":
        raise UsageError("--amp needs a CUDA device; the CPU trains in fp32")
    if cfg.keep_best and val_dir is None:
        raise UsageError("keep_best needs paired validation data (--val)")
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = run_dir / "cache"
    index = shared_cache(data_dirs, cache, cfg, rank, world)
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    gcfg = GeneratorConfig(c_dim=len(cfg.domains), conv_dim=cfg.g_conv_dim, n_res=cfg.g_repeat,
                           output=cfg.g_output, highpass_px=cfg.g_highpass_px,
                           upsample=cfg.g_upsample)
    dcfg = DiscriminatorConfig(c_dim=len(cfg.domains), conv_dim=cfg.d_conv_dim,
                               n_layers=cfg.d_layers, spectral_norm=cfg.d_spectral_norm,
                               highpass_gain=cfg.d_highpass_gain,
                               antialias=cfg.d_antialias,
                               spectral_head=cfg.d_spectral_head,
                               feature_channels=gcfg.conv_dim * (1 << gcfg.n_down) // 2)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    gen, disc = Generator(gcfg).to(dev), Discriminator(dcfg).to(dev)
    torch.manual_seed(cfg.seed * 1000 + rank)  # then each rank its own random stream
    if dev.type == "cuda":
        gen = gen.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        disc = disc.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    windows = learned_windows(cfg, index, dev) if gcfg.needs_base else None
    opt_g = torch.optim.Adam(gen.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    if windows is not None:  # the learnt kernel windows: their own learning rate
        opt_g.add_param_group({"params": list(windows.parameters()), "lr": cfg.lr_base})
    opt_d = torch.optim.Adam(disc.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    sampler = SliceSampler(cache, index, cfg.crop, seed=cfg.seed * 1000 + rank,
                           one_kernel_per_scan=cfg.one_kernel_per_scan)
    start, wall = 0, 0.0
    phases: list[dict[str, Any]] = []
    patch_state = None
    ckpt = latest_checkpoint(run_dir) if resume else None
    if resume and ckpt is None and rank == 0:
        print(f"kernelconv: no checkpoint in {run_dir}; starting a new run")
    if ckpt is None and init is not None:
        load_states([(gen, init.g_state), (disc, init.d_state)],
                     f"--init: {init.label} does not fit this run's networks")
    elif ckpt is not None and init is not None and rank == 0:
        print(f"kernelconv: resuming {run_dir}; --init applies to new runs only")
    if ckpt is not None:
        state = read_checkpoint(ckpt, dev, ("G", "D", "opt_g", "opt_d", "iteration", "config"))
        load_states([(gen, state["G"]), (disc, state["D"]), (opt_g, state["opt_g"]),
                      (opt_d, state["opt_d"]),
                      (windows, state.get("base") if windows is not None else None)],
                     f"{ckpt}: trained with other network settings than these (g_conv_dim, "
                     "g_repeat, d_conv_dim, d_layers, kernels); resume with the run's own "
                     "settings")
        start, wall = int(state["iteration"]), float(state["wall_seconds"])
        phases = training_phases(state)
        if len(state["rng"]["torch"]) == world:  # same world size: continue the same streams
            torch.set_rng_state(state["rng"]["torch"][rank])
            sampler.rng.bit_generator.state = state["rng"]["sampler"][rank]
            patch_state = state["rng"].get("patch", [None] * world)[rank]
    if phases and cfg.kernel_table and cfg.g_base_transfers and rank == 0 and \
            not phases[-1]["config"].get("g_base_transfers", False):
        print("kernelconv: this run's base filter was trained on the kernel table's windows; "
              "it goes on with the table's fitted transfers (g_base_transfers: false keeps the "
              "windows)")
    if not phases or not same_training(phases[-1]["config"], asdict(cfg)):
        phases.append({"start": start, "config": asdict(cfg)})
    loss = StarGanLoss(gen, disc, LossWeights(cfg.lambda_cls, cfg.lambda_cyc, cfg.lambda_gp,
                                              cfg.lambda_reg,
                                              cfg.lambda_paired if cfg.paired else 0.0,
                                              cfg.lambda_spectral, cfg.lambda_adv),
                       cfg.reg, cfg.n_patches, cfg.tau, patch_seed=cfg.seed * 1000 + rank + 7,
                       base=(windows.convert if windows is not None
                             else base_filter(cfg.domains, cfg.kernel_table,
                                              cfg.g_base_transfers))
                       if gcfg.needs_base else None)
    if patch_state is not None:
        loss.patch_rng.set_state(patch_state)
    if loss.spectral is not None:
        wanted = spectral_source(cfg)
        if ckpt is not None and "spectral_targets" in state:
            load_states([(loss.spectral, state["spectral_targets"])],
                        f"{ckpt}: its spectral targets do not fit this run")
            if loss.spectral.source != wanted:  # spectral_data set, changed or dropped
                if rank == 0:
                    print(f"kernelconv: the spectral targets came from {loss.spectral.source}; "
                          f"this phase takes them from {wanted}")
                loss.spectral = SpectralTargets(len(cfg.domains))
        if cfg.spectral_data and loss.spectral.source != wanted:
            archive_spectral_targets(loss.spectral, cfg, run_dir, dev, rank, world)
        loss.spectral_fixed = bool(cfg.spectral_data)
    if cfg.compile:
        loss.gen = torch.compile(gen)  # type: ignore[assignment]
        loss.disc = torch.compile(disc)  # type: ignore[assignment]
    writer = _summary_writer(run_dir) if rank == 0 else None
    validation = None
    if val_dir is not None and rank == 0:
        from kernelconv.training.validation import PairedValidation

        validation = PairedValidation(val_dir, cfg.domains, cfg.kernel_map, cfg.val_slices)
    val_every = cfg.val_every or cfg.ckpt_every
    best = best_score(run_dir) if cfg.keep_best and rank == 0 else None
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()

    def update(opt: torch.optim.Optimizer, module: torch.nn.Module,
               phase_loss: torch.Tensor) -> None:
        """One optimiser step of one network: backward, all-reduce across ranks, step."""
        opt.zero_grad(set_to_none=True)
        scaler.scale(phase_loss).backward()
        _average_gradients(module, world)
        scaler.step(opt)

    t0 = time.perf_counter()
    last = None
    done = start
    window_stats: list[dict[str, float]] = []
    group_lrs = [(g, lr) for opt, lrs in ((opt_g, (cfg.lr_g, cfg.lr_base)), (opt_d, (cfg.lr_d,)))
                 for g, lr in zip(opt.param_groups, lrs, strict=False)]
    for it in range(start, cfg.iters):
        for group, base_lr in group_lrs:
            group["lr"] = base_lr * _lr_factor(cfg, it)
        imgs, labels, tgt_imgs, tgt_labels, pixel_mm = sampler.batch(cfg.batch_size, cfg.paired)
        x = torch.from_numpy(imgs).to(dev)
        c_org = torch.from_numpy(labels).to(dev)
        if cfg.paired and tgt_labels is not None:
            c_trg = torch.from_numpy(tgt_labels).to(dev)
        else:
            c_trg = sample_targets(c_org, len(cfg.domains), cfg.target_sampling)
        real_t = torch.from_numpy(tgt_imgs).to(dev) if tgt_imgs is not None else None
        if it < cfg.g_warmup_iters and real_t is not None:
            with autocast():
                w_loss, stats = loss.warmup_step(x, c_trg, real_t, c_org, pixel_mm)
            update(opt_g, gen, w_loss)
        elif it < cfg.d_cls_warmup_iters:
            with autocast():
                d_loss, stats = loss.d_cls_warmup_step(x, c_org, pixel_mm)
            update(opt_d, disc, d_loss)
        else:
            with autocast():
                d_loss, stats = loss.d_step(x, c_org, c_trg, pixel_mm)
            update(opt_d, disc, d_loss)
            if (it + 1) % cfg.n_critic == 0:
                with autocast():
                    g_loss, g_stats = loss.g_step(x, c_org, c_trg, real_t, pixel_mm)
                    if windows is not None and cfg.base_smooth > 0:
                        rough = windows.roughness()
                        g_loss = g_loss + cfg.base_smooth * rough.float()
                        g_stats["G/base_rough"] = float(rough.detach())
                update(opt_g, gen, g_loss)
                stats.update(g_stats)
        scaler.update()
        done = it + 1
        if rank == 0 and (done % cfg.log_every == 0 or done == cfg.iters):
            window_stats.append(stats)
            _log_losses(run_dir, done, window_stats, opt_g.param_groups[0]["lr"])
            window_stats = []
            if writer is not None:
                for k, v in stats.items():
                    writer.add_scalar(k, v, done)
                writer.add_scalar("lr/G", opt_g.param_groups[0]["lr"], done)
        elif rank == 0:
            window_stats.append(stats)
        if rank == 0:
            on_progress(done, cfg.iters, stats)
        val_now = val_dir is not None and (done % val_every == 0 or done == cfg.iters)
        improved, score = False, 0.0
        if validation is not None and val_now:
            scores = validation.run(gen, dev, None if windows is None else
                                    windows.responses_json(windows_table(cfg), "validation"))
            score = validation_score(scores)
            # a checkpoint whose generator was never updated (the D warm-up) is no candidate:
            # it is the untrained start, and mean PSNR favours the identity soft -> sharp
            improved = (cfg.keep_best and done > cfg.d_cls_warmup_iters
                        and (best is None or score > best))
            with open(run_dir / "validation.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"iteration": done, **scores}) + "\n")
            if writer is not None:
                for k, v in scores.items():
                    writer.add_scalar(k, v, done)
                for name, img in validation.samples.items():
                    writer.add_image(f"sample/{name}", img[None], done, dataformats="CHW")
        if cfg.keep_best and val_now and _agree(improved, world):
            best = score
            save_checkpoint(run_dir, cfg, gcfg, dcfg, gen, disc, opt_g, opt_d, sampler, done,
                            wall + time.perf_counter() - t0, rank, world, index, phases,
                            loss.patch_rng, best_score=score, base=windows,
                            spectral=loss.spectral)
        out_of_time = _agree(max_seconds is not None
                             and time.perf_counter() - t0 >= max_seconds, world)
        if done % cfg.ckpt_every == 0 or done == cfg.iters or out_of_time:
            elapsed = wall + time.perf_counter() - t0
            last = save_checkpoint(run_dir, cfg, gcfg, dcfg, gen, disc, opt_g, opt_d, sampler,
                                    done, elapsed, rank, world, index, phases,
                                    loss.patch_rng, base=windows,
                                    spectral=loss.spectral)
        if out_of_time:
            break
    if writer is not None:
        writer.close()
    checksum = float(sum(p.detach().double().sum() for p in gen.parameters()))
    if world > 1:
        dist.barrier()
    return TrainResult(done, wall + time.perf_counter() - t0,
                       last or latest_checkpoint(run_dir), checksum)


def sample_targets(labels: torch.Tensor, n_domains: int, mode: str) -> torch.Tensor:
    """Target kernels for a batch (from torch's global generator): ``shuffle`` (the
    reference: a permutation of the batch's own labels), ``random`` (uniform over all
    kernels) or ``other`` (extension: uniform over the kernels other than each slice's own)."""
    if mode == "shuffle":
        return labels[torch.randperm(len(labels), device="cpu").to(labels.device)]
    if mode == "other":
        shift = torch.randint(1, n_domains, labels.shape, device="cpu").to(labels.device)
        return (labels + shift) % n_domains
    return torch.randint(0, n_domains, labels.shape, device="cpu").to(labels.device)


def shared_cache(dirs: list[Path], cache: Path, cfg: TrainConfig, rank: int,
                 world: int) -> dict[str, Any]:
    """The decoded-series cache of ``dirs`` (:func:`build_cache`): rank 0 builds it, the other
    ranks read its index once it is there."""
    if rank == 0:
        index = build_cache(dirs, cache, cfg.domains, cfg.kernel_map)
    if world > 1:
        dist.barrier()
    if rank != 0:
        index = json.loads((cache / "index.json").read_text())
    return dict(index)


#: random crops (batches of 4) drawn from a spectral_data archive to fix the spectral targets
SPECTRAL_ARCHIVE_BATCHES = 250


def spectral_source(cfg: TrainConfig) -> str:
    """Where a run's spectral targets come from: "batches", or its archive's folders."""
    if not cfg.spectral_data:
        return "batches"
    return "archive " + ", ".join(str(Path(d).resolve()) for d in cfg.spectral_data)


def archive_spectral_targets(targets: Any, cfg: TrainConfig, run_dir: Path, dev: torch.device,
                             rank: int = 0, world: int = 1) -> None:
    """Fill the spectral term's per-kernel targets from the real archive ``spectral_data``
    (extension): its series are decoded once into RUN/spectral-cache (kernel names mapped to
    the run's domains as the training data's are; others are skipped and listed there), and
    the targets are the mean log ring power of SPECTRAL_ARCHIVE_BATCHES batches of random
    crops of the training crop size (the same body-only rule as the training batches'). A
    domain the archive lacks keeps no target, so the term ignores it."""
    cache = run_dir / "spectral-cache"
    dirs = [Path(d).resolve() for d in cfg.spectral_data]
    try:
        index = shared_cache(dirs, cache, cfg, rank, world)
    except KernelconvError as exc:
        raise UsageError(f"spectral_data: {exc}") from None
    sampler = SliceSampler(cache, index, cfg.crop, seed=cfg.seed * 1000 + 991)
    for _ in range(SPECTRAL_ARCHIVE_BATCHES):
        imgs, labels, _, _, pixel_mm = sampler.batch(4)
        targets.update(torch.from_numpy(imgs).to(dev), torch.from_numpy(labels), pixel_mm)
    targets.source = spectral_source(cfg)


def windows_table(cfg: TrainConfig) -> Any:
    """The kernel response table a run's base filter refers to (built-in + its kernel_table)."""
    from kernelconv.kernel_response import load_response_table

    return load_response_table(Path(cfg.kernel_table) if cfg.kernel_table else None)


def learned_windows(cfg: TrainConfig, index: dict[str, Any], dev: torch.device) -> Any:
    """The learnt kernel windows of a ``g_base: learned`` run (None for the table's filter),
    with points up to the highest frequency of the training slices."""
    if cfg.g_base != "learned":
        return None
    from kernelconv.training.learned_windows import LearnedWindows, corner_frequency

    finest = min(float(s["pixel_mm"]) for s in index["series"])
    try:
        mod = LearnedWindows(cfg.domains, windows_table(cfg), corner_frequency(finest),
                             cfg.g_base_init, cfg.base_lock_lpcm)
    except ValueError as exc:
        raise UsageError(f"g_base learned: {exc}") from None
    return mod.to(dev)


def base_filter(domains: list[str], kernel_table: str | None = None,
                transfers: bool = True) -> Any:
    """The differentiable classical conversion a filter_residual generator corrects: the
    filter engine's own transfer, applied with torch (one owner of the filter), on the
    built-in kernels plus a JSON ``kernel_table``'s, with its fitted transfers between the
    domains (a site calibration's) unless ``transfers`` is False (the windows alone)."""
    from kernelconv.engines.filter_engine import FilterEngine
    from kernelconv.kernel_response import KernelTable

    loaded = KernelTable.load(Path(kernel_table) if kernel_table else None)
    missing = [d for d in domains if d not in loaded]
    if missing:
        raise UsageError(f"g_output filter_residual needs a kernel response for every domain; "
                         f"none for {', '.join(missing)}")
    engine = FilterEngine(loaded.subset(domains, transfers), noise_limit=False)

    def base(x: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
             pixel_mm: Any) -> torch.Tensor:
        return engine.convert_torch(x, [domains[int(i)] for i in source],
                                    [domains[int(i)] for i in target], list(pixel_mm),
                                    zero=UNIT_ZERO_HU)

    return base


def _log_losses(run_dir: Path, done: int, window: list[dict[str, float]], lr: float) -> None:
    """One line of RUN/losses.jsonl: every loss averaged over the iterations since the last
    line (G's terms over the iterations that updated G), so curves can be drawn without
    TensorBoard."""
    sums: dict[str, list[float]] = {}
    for stats in window:
        for k, v in stats.items():
            sums.setdefault(k, []).append(v)
    line = {"iteration": done, "lr_g": lr,
            **{k: sum(v) / len(v) for k, v in sorted(sums.items())}}
    with open(run_dir / "losses.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def _agree(flag: bool, world: int) -> bool:
    """True on every rank if it is true on any (so all ranks stop at the same iteration)."""
    if world <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _summary_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
