"""Every training setting, with the paper's values as defaults, and how settings layer.

A run's settings are ``TrainConfig()`` (the paper) updated by a JSON config file, then by the
command-line options (``updated``); the result is validated once, here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kernelconv.errors import UsageError
from kernelconv.fileio import read_settings_file


@dataclass
class TrainConfig:
    """Every training setting; a JSON config file holds any subset of these fields."""

    domains: list[str] = field(default_factory=lambda: ["B30f", "B50f", "B70f"])
    kernel_map: dict[str, str] = field(default_factory=dict)
    iters: int = 400_000
    batch_size: int = 2
    crop: int | None = None  # None: full slices (the paper)
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 5
    lambda_cls: float = 1.0
    lambda_cyc: float = 10.0
    lambda_gp: float = 10.0
    lambda_reg: float = 2.0
    reg: str = "ggcl"  # ggcl | ggdr | none
    n_patches: int = 64
    tau: float = 0.07
    lr_decay_start: int | None = None  # default: iters // 2
    #: shuffle (the reference) | random | other (extension: uniform among the kernels other
    #: than the slice's own, so every pass asks for a kernel change)
    target_sampling: str = "shuffle"
    #: extension: keep one reconstruction per scan (kernels assigned in turn over the scans),
    #: as in an archive where each patient was read with one kernel: no anatomy is seen in two
    one_kernel_per_scan: bool = False
    paired: bool = False  # extension: L1 to the real target slice
    lambda_paired: float = 10.0
    g_warmup_iters: int = 0  # extension (paired only): first N iterations train G on L1 alone
    g_conv_dim: int = 64
    g_repeat: int = 6
    #: extension: the generator's output variant (direct = the paper; residual,
    #: filter_residual: HU-preserving, kernelconv/nets/generator.py) and its high-pass sigma
    g_output: str = "direct"
    g_highpass_px: float = 0.0
    #: pixelshuffle (the paper) | resize (extension: nearest x2 + conv3x3 in the generator's
    #: upsampling, no period-2 pattern; kernelconv/nets/generator.py)
    g_upsample: str = "pixelshuffle"
    d_conv_dim: int = 32
    d_layers: int = 7
    #: all (the paper) | no_heads | none (extensions; kernelconv/nets/discriminator.py)
    d_spectral_norm: str = "all"
    #: extension: the discriminator also sees this gain x (x - its 3 x 3 local mean), the
    #: kernel's noise and edges, which its domain head otherwise never learns to read on a
    #: CPU budget (docs/training.md); 0: off (the paper)
    d_highpass_gain: int = 0
    #: extension: anti-aliased downsampling in the discriminator's encoder (conv stride 1,
    #: activation, [1 2 1]^2 blur at stride 2), so a generator cannot steer it with a
    #: period-2 grid that a stride-2 convolution aliases to a constant; False: the paper
    d_antialias: bool = False
    #: extension: the discriminator also reads each image's radial power spectrum (a small
    #: MLP adding to its real/fake and domain outputs; kernelconv/nets/discriminator.py);
    #: False: the paper
    d_spectral_head: bool = False
    #: extension: weight of the generator's spectral feature matching (its outputs' mean log
    #: radial power spectrum against the target kernel's real slices'; kernelconv/training/
    #: losses.py, SpectralTargets); 0: off (the paper)
    lambda_spectral: float = 0.0
    #: the generator's adversarial weight: 1 (the paper); 0 takes the adversarial term out of
    #: the generator's loss (the discriminator still trains), for ablations
    lambda_adv: float = 1.0
    #: extension: the first N iterations train only D's domain classifier on real slices
    #: (no generator update), so the generator's classification loss carries a kernel
    #: signal from its first step; 0: off (the paper)
    d_cls_warmup_iters: int = 0
    seed: int = 0
    ckpt_every: int = 1000
    val_every: int = 0  # 0: at every checkpoint (when --val is given)
    val_slices: int = 4
    keep_ckpts: int = 3
    #: extension: also keep checkpoints/best.pt, the checkpoint at the validation with the
    #: highest mean PSNR over all directions (needs --val) after the generator's first update
    #: (validations inside the D warm-up are no candidates); unpaired runs peak and regress
    keep_best: bool = False
    log_every: int = 50
    amp: str = "none"  # none | bf16 | fp16 (CUDA only)
    compile: bool = False
    init: str | None = None  # extension: where a new run's weights came from (--init)
    #: extension (with --init): each new domain's label starts as this source domain's
    init_domains: dict[str, str] = field(default_factory=dict)
    #: extension (with --init of a residual/filter_residual model): start the correction head
    #: at zero, so the new run starts exactly at the identity/filter and learns only what helps
    init_zero_head: bool = False
    #: extension: JSON kernel table (e.g. `kernelconv calibrate`'s) for the filter_residual
    #: base filter of domains the built-in table lacks or describes worse
    kernel_table: str | None = None
    #: extension: the base filter converts a calibrated pair of domains with the kernel
    #: table's fitted transfer (as `convert --method filter --kernel-table` does), which holds
    #: the true target's low-pass shift; False: with the windows alone (before 2026-12-07)
    g_base_transfers: bool = True
    #: extension: folders (relative to where `kernelconv train` runs, as --data's are; stored
    #: absolute) of real single-kernel series (an archive, unpaired) whose mean log
    #: radial power spectrum per kernel is the target of the spectral term (lambda_spectral),
    #: fixed before training, instead of the training batches' own; with paired warm-up the
    #: generator then trains on the paired L1 plus that term, so its output's noise texture is
    #: pulled to the real archive's kernels rather than the simulator's
    spectral_data: list[str] = field(default_factory=list)
    #: extension (filter_residual only): where the base filter's kernel windows come from:
    #: "table" (the kernel response table, the classical filter) or "learned" (one window per
    #: kernel, trained with the generator on unpaired data; kernelconv/training/
    #: learned_windows.py), starting flat ("identity": nothing about the kernels is given) or
    #: at the table's ("table"), with its own Adam learning rate and a smoothness weight
    g_base: str = "table"
    g_base_init: str = "identity"
    lr_base: float = 1e-2
    base_smooth: float = 1.0
    #: learnt windows keep their initial value up to this frequency (lp/cm)
    base_lock_lpcm: float = 1.0

    @staticmethod
    def read_file(path: Path) -> dict[str, Any]:
        """The settings a JSON config file gives (validated by ``updated``)."""
        return read_settings_file(path, "training config")

    def updated(self, data: dict[str, Any], origin: str = "config") -> TrainConfig:
        names = {f.name for f in fields(self)}
        unknown = set(data) - names
        if unknown:
            raise UsageError(f"{origin}: unknown setting(s) {', '.join(sorted(unknown))}")
        merged = {**asdict(self), **data}
        cfg = TrainConfig(**merged)
        if cfg.reg not in ("ggcl", "ggdr", "none"):
            raise UsageError(f"{origin}: reg must be ggcl, ggdr or none")
        if cfg.g_output not in ("direct", "residual", "filter_residual"):
            raise UsageError(f"{origin}: g_output must be direct, residual or filter_residual")
        if cfg.g_highpass_px < 0 or (cfg.g_highpass_px and cfg.g_output == "direct"):
            raise UsageError(f"{origin}: g_highpass_px needs a residual g_output and is >= 0")
        if cfg.g_upsample not in ("pixelshuffle", "resize"):
            raise UsageError(f"{origin}: g_upsample must be pixelshuffle or resize")
        if cfg.amp not in ("none", "bf16", "fp16"):
            raise UsageError(f"{origin}: amp must be none, bf16 or fp16")
        if cfg.g_warmup_iters and not cfg.paired:
            raise UsageError(f"{origin}: g_warmup_iters needs paired data (paired: true)")
        if cfg.target_sampling not in ("shuffle", "random", "other"):
            raise UsageError(f"{origin}: target_sampling must be shuffle, random or other")
        if cfg.d_spectral_norm not in ("all", "no_heads", "none"):
            raise UsageError(f"{origin}: d_spectral_norm must be all, no_heads or none")
        if cfg.d_highpass_gain < 0:
            raise UsageError(f"{origin}: d_highpass_gain must be >= 0")
        if cfg.d_cls_warmup_iters < 0:
            raise UsageError(f"{origin}: d_cls_warmup_iters must be >= 0")
        if cfg.d_cls_warmup_iters and cfg.g_warmup_iters:
            raise UsageError(f"{origin}: d_cls_warmup_iters and g_warmup_iters are two "
                             "different starts; use one")
        if cfg.one_kernel_per_scan and cfg.paired:
            raise UsageError(f"{origin}: one_kernel_per_scan leaves no pairs for paired training")
        if cfg.target_sampling == "shuffle" and cfg.batch_size == 1 and not cfg.paired:
            # a shuffle of one label is that label: G would only ever learn identity mappings
            raise UsageError(f"{origin}: batch size 1 with target_sampling shuffle never asks "
                             "for another kernel; use target_sampling random (or batch >= 2)")
        if cfg.init_domains and set(cfg.init_domains) != set(cfg.domains):
            raise UsageError(f"{origin}: with NEW=OLD kernels every kernel needs its source "
                             "label (e.g. --kernels FC13=B30f,FC51=B70f)")
        if cfg.g_base not in ("table", "learned"):
            raise UsageError(f"{origin}: g_base must be table or learned")
        if cfg.g_base == "learned" and cfg.g_output != "filter_residual":
            raise UsageError(f"{origin}: g_base learned needs g_output filter_residual")
        if cfg.g_base_init not in ("identity", "table"):
            raise UsageError(f"{origin}: g_base_init must be identity or table")
        if cfg.lambda_spectral < 0 or cfg.lambda_adv < 0:
            raise UsageError(f"{origin}: lambda_spectral and lambda_adv must be >= 0")
        if not isinstance(cfg.spectral_data, list) or \
                not all(isinstance(d, str) for d in cfg.spectral_data):
            raise UsageError(f"{origin}: spectral_data must be a list of folders")
        if cfg.spectral_data and cfg.lambda_spectral <= 0:
            raise UsageError(f"{origin}: spectral_data needs lambda_spectral > 0")
        if cfg.lr_base < 0 or cfg.base_smooth < 0 or cfg.base_lock_lpcm < 0:
            raise UsageError(f"{origin}: lr_base, base_smooth and base_lock_lpcm must be >= 0")
        multiple = 1 << cfg.d_layers
        if cfg.crop is not None and cfg.crop % multiple:
            raise UsageError(f"{origin}: crop must be a multiple of {multiple}")
        return cfg
