"""`kernelconv export`: a training checkpoint -> an inference model file (generator only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kernelconv import __version__
from kernelconv.errors import InputError
from kernelconv.kernels import BUILTIN_SHARPNESS
from kernelconv.modelfile import SUFFIX, ModelInfo, save_model, user_models_dir
from kernelconv.sim.kernels import load_kernel_table
from kernelconv.training.loop import latest_checkpoint


def export_model(source: Path, name: str, models_dir: Path | None = None,
                 half: bool = False, extra_provenance: dict[str, Any] | None = None) -> Path:
    """Write NAME.safetensors from a run folder (its latest checkpoint) or a checkpoint file."""
    ckpt = latest_checkpoint(source) if source.is_dir() else source
    if ckpt is None or not ckpt.is_file():
        raise InputError(f"{source}: no training checkpoint found")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        weights = state["G"]
        domains = list(state["domains"])
    except (OSError, RuntimeError, KeyError, EOFError) as exc:
        raise InputError(f"{ckpt}: not a kernelconv training checkpoint ({exc})") from None
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    sim = load_kernel_table()
    sharp = {d: float(sim[d].sharpness) if d in sim else BUILTIN_SHARPNESS.get(d, float(i))
             for i, d in enumerate(domains)}
    cfg = state["config"]
    warmup = int(cfg.get("g_warmup_iters") or 0) if cfg.get("paired") else 0
    if warmup >= int(state["iteration"]):
        method = ("the paper's generator trained with the paired L1 extension only (generator "
                  "warm-up; no adversarial, GGCL or cycle phase yet)")
    else:
        method = ("GGCL StarGAN (Choi et al., MICCAI 2023)" if cfg.get("reg") == "ggcl"
                  else f"StarGAN, regulariser {cfg.get('reg')}")
        if warmup:
            method += f", after {warmup} paired-L1 generator warm-up iterations (extension)"
        elif cfg.get("paired"):
            method += ", with the paired L1 extension"
    provenance = {
        "method": method,
        "iterations": state["iteration"], "wall_seconds": round(state["wall_seconds"], 1),
        "world_size": state.get("world_size", 1), "checkpoint": ckpt.name,
        "trained_with": f"kernelconv {state.get('kernelconv')}",
        "exported_with": f"kernelconv {__version__}", "weights_dtype": "fp16" if half else "fp32",
        "config": cfg, "training_series": len(state.get("data", [])),
        **(extra_provenance or {}),
    }
    info = ModelInfo(name=name, domains=domains, arch_args=dict(state["g_config"]),
                     domain_sharpness=sharp, provenance=provenance)
    out = (models_dir or user_models_dir()) / f"{name}{SUFFIX}"
    save_model(out, info, weights)
    return out
