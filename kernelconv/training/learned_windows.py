"""Kernel windows learnt from unpaired data: the base filter of a ``filter_residual`` generator
made trainable (an extension, ``g_base: learned``; the paper has no such part).

A reconstruction kernel is, to a good approximation, a radial filter W(f) of the image (shared
notes, kernel physics), and two reconstructions of the same raw data differ by the ratio of
their windows. The classical filter takes the windows from the kernel response table (the
project's spec, a vendor estimate or a site's paired calibration). Here each training domain's
window is a curve of learnable points instead, trained by the generator's own losses
(adversarial, domain classification, cycle) on unpaired slices; the base filter is built from
the learnt windows with exactly the filter engine's formula and lambdas
(:meth:`kernelconv.engines.filter_engine.FilterEngine.convert_torch`), so local mean HU is kept
(W(0) = 1) and the generator cannot make anything but an isotropic, shift-invariant change with
it: no grid, no structure for the discriminator to be fooled by.

Parametrisation: log W at points 0, STEP_LPCM, 2 STEP_LPCM, ... up to the highest radial
frequency of the training slices (their corner at the finest pixel spacing), W(0) = 1, linear
in W between the points and held at the last value beyond (the tabulated windows of
:class:`~kernelconv.kernel_response.KernelResponse`, which is how an exported model stores
them). Only ratios of windows matter, so one domain, the softest, is the anchor and keeps its
initial window; the others are learnt relative to it. Points up to ``lock_lpcm`` (1 lp/cm)
keep their initial value too: there kernels hardly differ and an error would move local mean
HU (an extension's prior, ``base_lock_lpcm``). Initial windows: flat (``identity``:
every window 1, the filter is the identity, nothing about the kernels is known) or the
response table's (``table``: start at the classical filter and refine it).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.hu import UNIT_ZERO_HU
from kernelconv.kernel_response import (
    KernelResponse,
    ResponseTable,
    domain_sharpness,
    responses_to_json,
)

#: spacing of the learnt points, lp/cm (the kernels' windows change on a scale of 1-2 lp/cm)
STEP_LPCM = 0.5
#: points at or below this frequency (lp/cm) keep their initial value: body kernels' windows
#: differ by at most a few per cent there (the project's B30f/B50f/B70f: <= 3 % at 1 lp/cm),
#: and a gain error there moves local mean HU (what a 2.5 mm low-pass keeps), which a kernel
#: change must never do (docs/training.md)
LOCK_LPCM = 1.0
INITS = ("identity", "table")


def corner_frequency(pixel_mm: float) -> float:
    """The highest radial frequency (lp/cm) on an image grid of this pixel spacing."""
    return math.sqrt(2.0) * 10.0 / (2.0 * pixel_mm)


class LearnedWindows(nn.Module):
    """One learnable window per domain, on points every STEP_LPCM after f = 0."""

    freqs: torch.Tensor
    log_w0: torch.Tensor
    free: torch.Tensor

    def __init__(self, domains: list[str], table: ResponseTable, f_max_lpcm: float,
                 init: str = "identity", lock_lpcm: float = LOCK_LPCM) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown window initialisation {init!r}")
        self.domains = list(domains)
        self.sharpness = domain_sharpness(self.domains, table=table)
        self.anchor = min(self.domains, key=lambda d: self.sharpness[d])
        n = max(2, int(math.ceil(f_max_lpcm / STEP_LPCM)))
        freqs = np.arange(n + 1) * STEP_LPCM
        log0 = np.zeros((len(self.domains), n + 1))
        if init == "table":
            missing = [d for d in self.domains if d not in table]
            if missing:
                raise ValueError(f"no kernel response to start from for {', '.join(missing)}")
            for i, d in enumerate(self.domains):
                log0[i] = np.log(np.maximum(table[d].window(freqs), 1e-6))
        self.register_buffer("freqs", torch.from_numpy(freqs))
        self.register_buffer("log_w0", torch.from_numpy(log0[:, 1:]))
        free = torch.from_numpy((freqs[1:] > lock_lpcm + 1e-9).astype(np.float64))[None].repeat(
            len(self.domains), 1)
        free[self.domains.index(self.anchor)] = 0.0
        self.register_buffer("free", free)
        self.delta = nn.Parameter(torch.zeros(len(self.domains), n, dtype=torch.float64))
        # the engine owns the filter (padding, the Wiener formula, lambdas by sharpness); the
        # table only gives it each domain's sharpness rank here, the windows come from us
        self.engine = FilterEngine(
            {d: KernelResponse(d, cutoff=1.0, order=1.0, sharpness=self.sharpness[d])
             for d in self.domains}, noise_limit=False)
        self.init = init

    def log_windows(self) -> torch.Tensor:
        """(domains, points) log W, including f = 0 (where it is 0)."""
        learnt = self.log_w0 + self.free * self.delta
        return torch.cat([torch.zeros_like(learnt[:, :1]), learnt], dim=1)

    def window(self, name: str, f_lpcm: torch.Tensor) -> torch.Tensor:
        """W of domain ``name`` at frequencies ``f_lpcm`` (any shape): linear between the
        points, held beyond the last, as numpy's interp of a tabulated window."""
        w = torch.exp(self.log_windows()[self.domains.index(name)])
        n = w.shape[0] - 1
        pos = (f_lpcm.to(w.dtype).abs() / STEP_LPCM).clamp(max=float(n))
        i0 = pos.floor().long().clamp(max=n - 1)
        t = pos - i0
        return w[i0] * (1.0 - t) + w[i0 + 1] * t

    def convert(self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                pixel_mm: Any) -> torch.Tensor:
        """The base filter's conversion of ``x`` (B, 1, H, W) from the ``source`` to the
        ``target`` labels, with the current windows (differentiable in them)."""
        return self.engine.convert_torch(x, [self.domains[int(i)] for i in source],
                                         [self.domains[int(i)] for i in target],
                                         [float(p) for p in pixel_mm], windows=self.window,
                                         zero=UNIT_ZERO_HU)

    def roughness(self) -> torch.Tensor:
        """Mean squared second difference of the learnt log windows: a smoothness prior that
        also carries points that see little data (near the grid's corner) along with their
        neighbours."""
        lw = self.log_windows()[self.free.amax(dim=1) > 0]
        if lw.shape[1] < 3 or lw.shape[0] == 0:
            return lw.sum() * 0.0
        return (lw[:, 2:] - 2.0 * lw[:, 1:-1] + lw[:, :-2]).square().mean()

    def responses(self, table: ResponseTable, provenance: str) -> ResponseTable:
        """Each domain as a kernel response with its learnt window tabulated (what an exported
        model stores and the filter engine reads); other fields from ``table`` where it knows
        the kernel (they then only describe it roughly), the sharpness rank as trained."""
        freqs = self.freqs.detach().cpu().numpy()
        windows = np.exp(self.log_windows().detach().cpu().numpy())
        out: ResponseTable = {}
        for d, w in zip(self.domains, windows, strict=True):
            pts = tuple((float(f), float(v)) for f, v in zip(freqs, w, strict=True))
            known = table.get(d) or KernelResponse(d, cutoff=1.0, order=1.0)
            out[d] = replace(known, sharpness=self.sharpness[d], tabulated=pts,
                             source=provenance, mtf50=None, mtf10=None, peak=None,
                             noise_ratio=None, uncertainty=0.0)
        return out

    def responses_json(self, table: ResponseTable, provenance: str) -> list[dict[str, object]]:
        return responses_to_json(self.responses(table, provenance))

    @classmethod
    def from_state(cls, domains: list[str], table: ResponseTable,
                   state: dict[str, torch.Tensor], init: str = "identity") -> LearnedWindows:
        """Rebuild from a checkpoint's ``base`` state (its points come from the state)."""
        n = int(state["delta"].shape[1])
        mod = cls(domains, table, n * STEP_LPCM, "identity")
        if state["free"].shape != mod.free.shape:  # written before the low band was locked
            state = {**state, "free": state["free"][:, :1].expand_as(mod.free).clone()}
        mod.load_state_dict(state)
        mod.init = init
        return mod
