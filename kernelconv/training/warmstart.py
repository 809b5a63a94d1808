"""`kernelconv train --init`: start a new run from existing weights (fine-tuning; an extension).

The source is a model file (a path, or a name such as the bundled default): its generator is
loaded and the discriminator starts fresh. Or a training checkpoint (``.pt``): both networks
are loaded. Either way the optimisers, the iteration count and the learning-rate schedule start
anew; the run's first phase records where the weights came from, and so does an exported
model's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelconv.errors import InputError, KernelconvError, UsageError
from kernelconv.modelfile import load_model, resolve_model
from kernelconv.training.checkpoint import read_checkpoint
from kernelconv.training.config import TrainConfig


@dataclass
class InitSource:
    label: str  # what the run records: model id and file, or checkpoint and iteration
    settings: dict[str, Any]  # architecture and domains the run must use to load these weights
    g_state: dict[str, Any]
    d_state: dict[str, Any] | None


def load_init(spec: str) -> InitSource:
    """Read ``--init MODEL|CKPT``; errors name the source and the reason (a missing or broken
    checkpoint exit 4, a missing or broken model file exit 3)."""
    path = Path(spec).expanduser()
    if path.suffix == ".pt":
        if not path.is_file():
            raise InputError(f"--init {spec}: checkpoint not found")
        state = read_checkpoint(path, required=("G", "D", "g_config", "d_config", "domains",
                                                "iteration"))
        g_cfg, d_cfg = state["g_config"], state["d_config"]
        settings = {"domains": list(state["domains"]), **_generator_settings(g_cfg),
                    "d_conv_dim": int(d_cfg["conv_dim"]),
                    "d_layers": int(d_cfg["n_layers"])}
        return InitSource(f"checkpoint {path.name} (iteration {state['iteration']})",
                          settings, state["G"], state["D"])
    try:
        info, weights = load_model(resolve_model(spec))
    except KernelconvError as exc:  # keeps its class: a bad model file is a model error
        raise type(exc)(f"--init: {exc}") from None
    if int(info.arch_args.get("n_down", 2)) != 2:
        raise UsageError(f"--init {spec}: a generator with {info.arch_args['n_down']} "
                         "downsamplings cannot be trained here (the paper's has 2)")
    settings = {"domains": list(info.domains), **_generator_settings(info.arch_args)}
    return InitSource(f"model {info.model_id}", settings, weights, None)


def _generator_settings(arch: dict[str, Any]) -> dict[str, Any]:
    """The training settings that rebuild this generator (width, depth, output variant)."""
    from kernelconv.nets.generator import GeneratorConfig

    g = GeneratorConfig.from_dict(arch)
    return {"g_conv_dim": g.conv_dim, "g_repeat": g.n_res, "g_output": g.output,
            "g_highpass_px": g.highpass_px, "g_upsample": g.upsample}


def adopt_settings(cfg: TrainConfig, source: InitSource, explicit: set[str]) -> dict[str, Any]:
    """The settings a run takes from its init source; a clash with one the user set is an error.

    ``explicit`` names the settings given in the config file or as options: those must agree
    with the source (the weights fit only their own architecture and label order).
    """
    settings = dict(source.settings)
    if cfg.init_domains:  # the site's kernels, each label from a source label
        old = list(settings["domains"])
        missing = sorted(set(cfg.init_domains.values()) - set(old))
        if missing:
            raise UsageError(f"--init: {source.label} has no kernel {', '.join(missing)} "
                             f"(it has {', '.join(old)})")
        source.g_state = remap_labels(source.g_state, old,
                                      [cfg.init_domains[d] for d in cfg.domains])
        source.d_state = None  # its class head knows the old labels: a fresh discriminator
        settings["domains"] = list(cfg.domains)
        source.label += " (labels " + ", ".join(f"{d} <- {cfg.init_domains[d]}"
                                                for d in cfg.domains) + ")"
    if cfg.init_zero_head:
        if settings.get("g_output", "direct") == "direct":
            raise UsageError("init_zero_head: the source generator is the paper's direct one; "
                             "only a residual or filter_residual correction can start at zero")
        import torch

        source.g_state = {k: (torch.zeros_like(v) if k == "head.0.weight" else v)
                          for k, v in source.g_state.items()}
        source.label += " (correction head zeroed)"
    for key, value in settings.items():
        if key in explicit and getattr(cfg, key) != value:
            raise UsageError(f"--init: {source.label} has {key} {value}, but the training "
                             f"settings say {getattr(cfg, key)}; leave {key} out to use the "
                             "source's")
    return settings


def remap_labels(g_state: dict[str, Any], old: list[str], picks: list[str]) -> dict[str, Any]:
    """Generator weights for new label slots: the first convolution's label channels (its
    last ``len(old)`` input channels, one per source domain) are those of ``picks``, in the
    new order. Nothing else in the generator depends on the label."""
    key = "encoder.0.weight"
    if key not in g_state:
        raise UsageError("--init: the source generator has no first convolution "
                         f"({key}); cannot map its kernels")
    w = g_state[key]
    n = len(old)
    if w.shape[1] <= n:
        raise UsageError("--init: the source generator's first convolution has no label "
                         "channels")
    keep = w[:, : w.shape[1] - n]
    labels = w[:, w.shape[1] - n:]
    idx = [old.index(p) for p in picks]
    import torch

    return {**g_state, key: torch.cat([keep, labels[:, idx]], dim=1)}
