"""Training checkpoints: what they hold, how they are written, read, listed and loaded.

A checkpoint carries the networks' construction arguments with their weights (so a run or an
export rebuilds them), the optimisers, every rank's RNG states, the run's settings and its
phases (settings changes on resume). Written atomically by rank 0; only the newest
``keep_ckpts`` are kept.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from kernelconv import __version__
from kernelconv.errors import InputError, UsageError
from kernelconv.fileio import atomic_path
from kernelconv.nets.discriminator import DiscriminatorConfig
from kernelconv.nets.generator import GeneratorConfig
from kernelconv.training.config import TrainConfig
from kernelconv.training.data import SliceSampler

# settings that do not change what the networks are trained with (a run extended with more
# iterations, or checkpointed more often, is still one phase)
_BOOKKEEPING = ("iters", "ckpt_every", "val_every", "val_slices", "keep_ckpts", "keep_best",
                "log_every", "compile", "init")


def training_phases(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's history from a checkpoint: [{"start": iteration, "config": {...}}, ...].

    A run resumed with other settings (for example a warm-up, then the adversarial recipe) has
    one phase per settings change. Checkpoints written before phases were recorded hold only
    their last config, which is then taken as the whole history.
    """
    return list(state.get("phases") or [{"start": 0, "config": state["config"]}])


#: settings whose default changed when they were introduced: a checkpoint written before they
#: existed trained as this value, not as today's default
PREDATED = {"g_base_transfers": False}


def same_training(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two settings train the same way; a setting one of them predates (a checkpoint
    written before it existed) counts as its default, or as PREDATED says it trained."""
    defaults = {**asdict(TrainConfig()), **PREDATED}
    return {k: v for k, v in {**defaults, **a}.items() if k not in _BOOKKEEPING} == \
        {k: v for k, v in {**defaults, **b}.items() if k not in _BOOKKEEPING}


def read_checkpoint(path: Path, map_location: Any = "cpu",
                    required: tuple[str, ...] = ("G", "config", "domains")) -> dict[str, Any]:
    """A training checkpoint's state; a file that is not one is an input error (exit 4)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise InputError(f"{path}: not a kernelconv training checkpoint "
                         f"({type(exc).__name__})") from None
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise InputError(f"{path}: not a kernelconv training checkpoint (no {missing[0]})")
    return dict(state)


def load_states(pairs: list[tuple[Any, dict[str, Any] | None]], problem: str) -> None:
    """Load each state into its network or optimiser (None: keep as is); one that does not fit
    is a usage error saying ``problem`` and the first reason torch gives."""
    try:
        for target, state in pairs:
            if state is not None:
                target.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise UsageError(f"{problem} ({first})") from None


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))
    return ckpts[-1] if ckpts else None


def _gather(obj: Any, world: int) -> list[Any]:
    if world <= 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def save_checkpoint(run_dir: Path, cfg: TrainConfig, gcfg: GeneratorConfig,
                     dcfg: DiscriminatorConfig, gen: torch.nn.Module, disc: torch.nn.Module,
                     opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                     sampler: SliceSampler, it: int, wall: float, rank: int, world: int,
                     index: dict[str, Any], phases: list[dict[str, Any]],
                     patch_rng: torch.Generator, best_score: float | None = None,
                     base: torch.nn.Module | None = None, spectral: Any = None) -> Path | None:
    """Every rank contributes its RNG states; rank 0 writes atomically and prunes old ones.

    ``base``: the learnt kernel windows of a ``g_base: learned`` run, saved with the networks;
    ``spectral``: the generator's spectral feature-matching targets (``lambda_spectral``).
    With ``best_score`` the checkpoint is written as ``best.pt`` instead (the validation score
    it reached is stored with it; never pruned, never what --resume picks)."""
    torch_states = _gather(torch.get_rng_state(), world)
    sampler_states = _gather(sampler.rng.bit_generator.state, world)
    patch_states = _gather(patch_rng.get_state(), world)
    if rank != 0:
        return None
    folder = run_dir / "checkpoints"
    folder.mkdir(exist_ok=True)
    path = folder / ("best.pt" if best_score is not None else f"ckpt-{it:08d}.pt")
    state = {
        "kernelconv": __version__, "iteration": it, "wall_seconds": wall,
        "config": asdict(cfg), "phases": phases,
        "g_config": gcfg.to_dict(), "d_config": dcfg.to_dict(),
        "domains": cfg.domains, "world_size": world,
        "data": [s.get("folder") for s in index["series"]],
        "G": gen.state_dict(), "D": disc.state_dict(),
        "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
        "rng": {"torch": torch_states, "sampler": sampler_states, "patch": patch_states},
    }
    if base is not None:  # learnt kernel windows (g_base learned)
        state["base"] = base.state_dict()
    if spectral is not None:  # the running spectra of real slices (lambda_spectral)
        state["spectral_targets"] = spectral.state_dict()
    if best_score is not None:
        state["val_score"] = best_score
    with atomic_path(path) as part:
        torch.save(state, part)
    if best_score is not None:
        return path
    for old in sorted(folder.glob("ckpt-*.pt"))[:-cfg.keep_ckpts]:
        old.unlink()
    return path


def best_score(run_dir: Path) -> float | None:
    """The validation score of the run's best.pt (None: no best checkpoint yet)."""
    path = run_dir / "checkpoints" / "best.pt"
    if not path.exists():
        return None
    return float(read_checkpoint(path, required=("val_score",))["val_score"])


def validation_score(scores: dict[str, float]) -> float:
    """What ``keep_best`` maximises: the mean validation PSNR over all directions."""
    values = [v for k, v in scores.items() if k.endswith("/psnr")]
    return float(sum(values) / len(values)) if values else float("-inf")
