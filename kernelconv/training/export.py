"""`kernelconv export`: a training checkpoint -> an inference model file (generator only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kernelconv import __version__
from kernelconv.errors import InputError
from kernelconv.kernel_response import (
    KernelTable,
    domain_sharpness,
    responses_to_json,
    transfers_to_json,
)
from kernelconv.modelfile import SUFFIX, ModelInfo, save_model, user_models_dir
from kernelconv.training.checkpoint import latest_checkpoint, read_checkpoint, training_phases


def parse_direction_use(specs: tuple[str, ...] | list[str], info: ModelInfo) -> dict[str, str]:
    """``--use-filter`` values -> a per-direction use map over the model's domains: SRC->TGT
    (or SRC:TGT) routes that direction to the filter; ``sharpening`` / ``smoothing`` route
    every such direction; every other direction uses the network. Empty specs: {}. A routed
    direction needs a response for both kernels in the model's kernel table."""
    from kernelconv.engines import model_kernel_table
    from kernelconv.modelfile import direction_key, validate_direction_use

    if not specs:
        return {}
    domains = info.domains
    sharpness = domain_sharpness(domains, info.domain_sharpness)
    use = {direction_key(s, t): "network" for s in domains for t in domains if s != t}
    for spec in specs:
        word = spec.strip()
        if word in ("sharpening", "smoothing"):
            for s in domains:
                for t in domains:
                    if s != t and (sharpness[t] > sharpness[s]) == (word == "sharpening"):
                        use[direction_key(s, t)] = "filter"
            continue
        src, sep, tgt = word.replace(":", "->", 1).partition("->")
        key = direction_key(src.strip(), tgt.strip())
        if not sep or key not in use:
            raise InputError(f"--use-filter {spec}: expected SRC->TGT of two of the model's "
                             f"kernels ({', '.join(domains)}), sharpening or smoothing")
        use[key] = "filter"
    responses = model_kernel_table(info).responses
    for key, value in use.items():
        missing = [k for k in key.split("->") if k not in responses]
        if value == "filter" and missing:
            raise InputError(f"--use-filter: {key} cannot run the filter: the model's "
                             f"kernel table has no response for {', '.join(missing)}")
    return validate_direction_use(domains, use)


def route_installed_model(path: Path, name: str, models_dir: Path | None,
                          specs: tuple[str, ...]) -> Path:
    """A copy of an installed model under ``name`` whose per-direction use is ``specs``: the
    same weights (same checksum), another name and another direction map."""
    from kernelconv.modelfile import load_model

    info, state = load_model(path)
    if name == info.name and (models_dir is None or models_dir.resolve() == path.parent.resolve()):
        raise InputError(f"--name {name}: give the routed model another name than {path.name}")
    use = parse_direction_use(specs, info)
    info.provenance = {**info.provenance, "direction_use_from": info.model_id,
                       "direction_use_set_with": "kernelconv export --use-filter "
                       + " --use-filter ".join(specs)}
    info.name, info.direction_use = name, use
    out = (models_dir or user_models_dir()) / f"{name}{SUFFIX}"
    save_model(out, info, state)
    return out


def export_model(source: Path, name: str, models_dir: Path | None = None,
                 half: bool = False, extra_provenance: dict[str, Any] | None = None,
                 use_filter: tuple[str, ...] = ()) -> Path:
    """Write NAME.safetensors from a run folder (its latest checkpoint) or a checkpoint file."""
    ckpt = latest_checkpoint(source) if source.is_dir() else source
    if ckpt is None or not ckpt.is_file():
        raise InputError(f"{source}: no training checkpoint found")
    state = read_checkpoint(ckpt, required=("G", "domains", "config", "g_config", "iteration"))
    weights = state["G"]
    domains = list(state["domains"])
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    table_file = state["config"].get("kernel_table")
    if table_file and not Path(table_file).is_file():
        raise InputError(f"{table_file}: the run's kernel table is gone; export needs it (it "
                         "is stored in the model)")
    kernels = KernelTable.load(Path(table_file) if table_file else None)
    table = kernels.responses
    sharp = domain_sharpness(domains, table=table)
    cfg = state["config"]
    method, phases = describe_training(training_phases(state), int(state["iteration"]))
    provenance = {
        "method": method,
        "iterations": state["iteration"], "wall_seconds": round(state["wall_seconds"], 1),
        "world_size": state.get("world_size", 1), "checkpoint": ckpt.name,
        "trained_with": f"kernelconv {state.get('kernelconv')}",
        "exported_with": f"kernelconv {__version__}", "weights_dtype": "fp16" if half else "fp32",
        "phases": phases, "config": cfg, "training_series": len(state.get("data", [])),
        **(extra_provenance or {}),
    }
    arch = dict(state["g_config"])
    responses = []
    transfers: list[dict[str, object]] = []
    if state.get("base") is not None:  # learnt windows (g_base learned): they are the filter
        from kernelconv.training.learned_windows import LearnedWindows

        windows = LearnedWindows.from_state(domains, table, state["base"])
        responses = windows.responses_json(
            table, f"learnt from unpaired data by kernelconv train (g_base learned, start "
                   f"{cfg.get('g_base_init')}, extension), exported as {name}")
    elif arch.get("output") == "filter_residual":  # the base filter travels with the model
        responses = responses_to_json({d: table[d] for d in domains if d in table})
        if cfg.get("g_base_transfers", False):  # what the run's base filter converted with
            transfers = transfers_to_json(kernels.subset(domains).transfers)
    info = ModelInfo(name=name, domains=domains, arch_args=arch,
                     domain_sharpness=sharp, provenance=provenance, kernel_responses=responses,
                     kernel_transfers=transfers)
    info.direction_use = parse_direction_use(use_filter, info)
    out = (models_dir or user_models_dir()) / f"{name}{SUFFIX}"
    save_model(out, info, weights)
    return out


def _reg_name(reg: str) -> str:
    return "GGCL StarGAN (Choi et al., MICCAI 2023)" if reg == "ggcl" else \
        f"StarGAN, regulariser {reg}"


def describe_training(phases: list[dict[str, Any]], end: int) -> tuple[str, list[str]]:
    """What a run really trained, from its phases: (one-line method, one line per phase).

    Warm-up iterations (``g_warmup_iters``, paired only) train the generator on L1 alone; the
    others run the adversarial recipe with the phase's regulariser.
    """
    lines: list[str] = []
    warm_total = adv_total = d_warm_total = 0
    adv_regs: list[str] = []
    adv_paired = False
    for i, phase in enumerate(phases):
        cfg, first = phase["config"], int(phase["start"])
        last = int(phases[i + 1]["start"]) if i + 1 < len(phases) else end
        if last <= first:
            continue
        warm_until = int(cfg.get("g_warmup_iters") or 0) if cfg.get("paired") else 0
        warm = max(0, min(last, warm_until) - first)
        d_warm = max(0, min(last, int(cfg.get("d_cls_warmup_iters") or 0)) - first - warm)
        adv = last - first - warm - d_warm
        warm_total, adv_total = warm_total + warm, adv_total + adv
        d_warm_total += d_warm
        what = []
        if warm:
            what.append(f"{warm} generator-only paired L1 warm-up iterations (extension)")
        if d_warm:
            what.append(f"{d_warm} discriminator-classifier warm-up iterations (extension)")
        if adv:
            adv_regs.append(str(cfg.get("reg")))
            adv_paired = adv_paired or bool(cfg.get("paired"))
            what.append(f"{adv} iterations of {_reg_name(str(cfg.get('reg')))}"
                        + (" with the paired L1 extension" if cfg.get("paired") else ", unpaired"))
        crop = cfg.get("crop")
        lines.append(f"iterations {first}-{last}: " + " and ".join(what) + "; "
                     + (f"{crop} x {crop} crops" if crop else "full slices")
                     + f", batch {cfg.get('batch_size')}, lr G {cfg.get('lr_g')}"
                     + (f" D {cfg.get('lr_d')}, n_critic {cfg.get('n_critic', 5)}"
                        if adv else ""))
    init = phases[0]["config"].get("init") if phases else None
    start = f", starting from {init} (--init, extension)" if init else ""
    output = str(phases[-1]["config"].get("g_output", "direct")) if phases else "direct"
    last_cfg = phases[-1]["config"] if phases else {}
    learnt = last_cfg.get("g_base") == "learned"
    filter_words = ("an MTF-ratio filter whose kernel windows are learnt with it (g_base "
                    f"learned, starting {last_cfg.get('g_base_init')})" if learnt
                    else "the MTF-ratio filter's conversion")
    variant = "" if output == "direct" else (
        f"; HU-preserving generator output '{output}' (extension: "
        + (filter_words if output == "filter_residual" else "the input")
        + f" + a correction high-passed at sigma {phases[-1]['config'].get('g_highpass_px')} px)")
    if not adv_total:
        who = "the paper's generator" if output == "direct" else "the generator"
        return (f"{who} trained with the paired L1 extension only (generator "
                f"warm-up; no adversarial, GGCL or cycle phase yet){start}{variant}", lines)
    method = _reg_name(adv_regs[-1])
    if len(set(adv_regs)) > 1:
        method += f" (regulariser changed during training: {', '.join(adv_regs)})"
    if adv_paired:
        method += ", with the paired L1 extension"
    method += f", {adv_total} adversarial iterations"
    if warm_total:
        method += f", after {warm_total} paired-L1 generator warm-up iterations (extension)"
    if d_warm_total:
        method += (f", after {d_warm_total} discriminator-classifier warm-up iterations "
                   "(extension)")
    return method + start + variant + _unpaired_extensions(phases[-1]["config"]), lines


def _unpaired_extensions(cfg: dict[str, Any]) -> str:
    """The departures from the paper's adversarial recipe a run used, for its provenance."""
    ext = []
    if cfg.get("g_upsample", "pixelshuffle") != "pixelshuffle":
        ext.append(f"generator upsampling '{cfg.get('g_upsample')}'")
    if cfg.get("d_spectral_norm", "all") != "all":
        ext.append(f"discriminator spectral norm '{cfg.get('d_spectral_norm')}'")
    if cfg.get("d_antialias"):
        ext.append("anti-aliased discriminator downsampling")
    if cfg.get("g_base") == "learned" and not cfg.get("lr_g"):
        ext.append("generator network frozen at a zero correction (the learnt windows alone)")
    if cfg.get("lambda_adv", 1.0) != 1.0:
        ext.append(f"generator adversarial weight {cfg.get('lambda_adv')}")
    if cfg.get("lambda_cls", 1.0) != 1.0:
        ext.append(f"classification weight {cfg.get('lambda_cls')}")
    if cfg.get("lambda_spectral"):
        ext.append(f"spectral feature matching x{cfg.get('lambda_spectral')}")
    if cfg.get("d_spectral_head"):
        ext.append("discriminator radial-spectrum head")
    if cfg.get("d_highpass_gain"):
        ext.append(f"discriminator high-pass input x{cfg.get('d_highpass_gain')}")
    if cfg.get("target_sampling") == "other":
        ext.append("target kernel always another kernel")
    if cfg.get("one_kernel_per_scan"):
        ext.append("one kernel per scan (archive-like split)")
    return f"; extensions: {', '.join(ext)}" if ext else ""
