"""The losses of StarGAN with GGCL, and the phases that use them (D step, G step).

Defaults are the paper's: WGAN-GP (lambda_gp 10), domain classification (lambda_cls 1), cycle
L1 (lambda_cyc 10), and the discriminator regulariser GGCL (PatchNCE between the discriminator's
semantic label map, the queries, and the detached generator feature, the keys; 64 patches,
tau 0.07, lambda 2) computed on fake images and added to the discriminator loss only. GGDR
(1 - cosine similarity per pixel) and no regulariser are the paper's ablations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernelconv.hu import hu_to_unit
from kernelconv.kernel_response import REFERENCE_PIXEL_MM
from kernelconv.nets.discriminator import Discriminator
from kernelconv.nets.generator import Generator
from kernelconv.nets.spectrum import N_LPCM_RINGS, log_ring_power


def _num(t: torch.Tensor) -> float:
    return float(t.detach())


def gradient_penalty(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: ((||grad_x D(x_hat)||_2 - 1)^2).mean() at x_hat between real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = disc(x_hat)[0]
    grad = torch.autograd.grad(out, x_hat, grad_outputs=torch.ones_like(out),
                               create_graph=True, retain_graph=True, only_inputs=True)[0]
    norm = grad.flatten(1).norm(2, dim=1)
    return ((norm - 1.0) ** 2).mean()


def patch_nce(query: torch.Tensor, key: torch.Tensor, n_patches: int = 64, tau: float = 0.07,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """PatchNCE (CUT) between two (B, C, H, W) maps: each query location's positive is the key
    at the same location; the negatives are the other sampled locations of the same image.

    The same random locations are used for every image of the batch; vectors are L2-normalised,
    with no projection head. The key is NOT detached here: the caller decides.
    """
    b, c, h, w = query.shape
    n = min(n_patches, h * w)
    ids = torch.randperm(h * w, generator=generator, device="cpu")[:n].to(query.device)
    q = F.normalize(query.flatten(2)[:, :, ids].transpose(1, 2), dim=2)  # (B, n, C)
    k = F.normalize(key.flatten(2)[:, :, ids].transpose(1, 2), dim=2)
    logits = torch.bmm(q, k.transpose(1, 2)) / tau  # (B, n, n): diagonal = positives
    target = torch.arange(n, device=query.device).expand(b, n)
    return F.cross_entropy(logits.reshape(b * n, n).float(), target.reshape(-1))


def ggdr(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """GGDR (Lee et al. 2022): mean over pixels of 1 - cosine similarity over channels."""
    return (1.0 - F.cosine_similarity(query.float(), key.float(), dim=1)).mean()


@dataclass(frozen=True)
class LossWeights:
    cls: float = 1.0
    cyc: float = 10.0
    gp: float = 10.0
    reg: float = 2.0
    paired: float = 0.0  # extension: L1 to the real target slice (paired data only)
    spectral: float = 0.0  # extension: spectral feature matching (SpectralTargets)
    adv: float = 1.0  # the generator's adversarial weight (the paper: 1; 0 for an ablation)


class SpectralTargets:
    """Extension (``lambda_spectral``): feature matching (Salimans et al. 2016) on a fixed
    feature, the log radial power spectrum (:func:`kernelconv.nets.spectrum.log_ring_power`).

    Per domain, the mean of the real slices' log ring power over every real batch the
    discriminator has seen (a plain cumulative mean: the real data do not change, and a single
    128 x 128 crop's low-frequency power varies by an order of magnitude with what it shows, so
    an exponential mean over the last ~100 batches wandered by 10-20% in amplitude there and the
    learnt windows followed it; ``momentum`` > 0 makes it exponential after 1 / momentum
    batches); the generator's term is, per target domain in the batch, the mean squared
    difference over rings between its outputs' mean log ring power and that domain's. A
    kernel change is a radial filter H, which moves log ring power by 2 log10 |H| whatever the
    anatomy, so in expectation the term is zero exactly where the generator's change has the
    power spectrum that separates the two kernels' slices. It needs no pairs: only that the
    domains' scans come from similar populations (anatomy and dose), which is also what the
    adversarial terms assume.
    """

    #: only items with at least this fraction of their pixels above BODY_HU count (both sides):
    #: crops mostly of air carry no anatomy and, in sharp kernels, the clipping of their noise
    #: at -1024 HU, a non-linear effect no filter makes; with them the kernels' mean spectra
    #: differed by 20-30% below 2 lp/cm where the kernels differ by 2%, without them the
    #: implied transfers are within 5% of the true ones up to 3 lp/cm (docs/training.md)
    BODY_FRACTION = 0.5
    BODY_HU = -500.0

    def __init__(self, n_domains: int, momentum: float = 0.0) -> None:
        self.momentum = momentum
        self.mean = torch.zeros(n_domains, N_LPCM_RINGS, dtype=torch.float64)
        self.seen = torch.zeros(n_domains, N_LPCM_RINGS, dtype=torch.float64)
        #: where the targets come from: "batches" (the training batches, as they go by) or
        #: the real archive's folders (spectral_data), so a resumed run can tell them apart
        self.source = "batches"

    @classmethod
    def body(cls, x: torch.Tensor) -> torch.Tensor:
        """(B,) bool: which items (network scale, [-1, 1]) are at least half body."""
        level = float(hu_to_unit(np.array([cls.BODY_HU]))[0])
        return (x[:, 0] > level).float().mean(dim=(1, 2)) >= cls.BODY_FRACTION

    @staticmethod
    def spacings(pixel_mm: Sequence[float] | None, n: int) -> Sequence[float]:
        """Each item's pixel spacing; the reference scanner's where the batch has none."""
        return pixel_mm or [REFERENCE_PIXEL_MM] * n

    @torch.no_grad()
    def update(self, real: torch.Tensor, labels: torch.Tensor,
               pixel_mm: Sequence[float] | None) -> None:
        keep = self.body(real).cpu()
        if not keep.any():
            return
        spec = log_ring_power(real, self.spacings(pixel_mm, len(real))).double().cpu()[keep]
        lab = labels.cpu()[keep]
        for d in lab.unique().tolist():
            m = spec[lab == d].nanmean(dim=0)
            ok = ~torch.isnan(m)
            self.seen[d, ok] += 1
            rate = torch.clamp(1.0 / self.seen[d, ok], min=self.momentum)
            self.mean[d, ok] = (1.0 - rate) * self.mean[d, ok] + rate * m[ok]

    def loss(self, fake: torch.Tensor, target: torch.Tensor,
             pixel_mm: Sequence[float] | None, source: torch.Tensor | None = None
             ) -> torch.Tensor:
        """The feature-matching term for ``fake`` (converted to ``target``); the items that
        count are those whose ``source`` (the images converted; default ``fake``) is body."""
        spec = log_ring_power(fake, self.spacings(pixel_mm, len(fake)))
        keep = self.body(fake if source is None else source)
        terms = []
        for d in target[keep].unique().tolist():
            m = spec[keep & (target == d)].nanmean(dim=0)
            ok = ~torch.isnan(m) & (self.seen[d] > 0).to(m.device)
            if ok.any():
                ref = self.mean[d].to(spec.device, spec.dtype)
                terms.append((m[ok] - ref[ok]).square().mean())
        return torch.stack(terms).mean() if terms else spec.nan_to_num().sum() * 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.clone(), "seen": self.seen.clone(), "source": self.source}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["mean"].shape != self.mean.shape:
            raise ValueError("spectral targets of another number of kernels")
        self.mean, self.seen = state["mean"].clone(), state["seen"].clone()
        self.source = str(state.get("source", "batches"))  # older checkpoints: batches


#: base(x, source labels, target labels, pixel spacings) -> the classical filter's conversion
BaseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Sequence[float]], torch.Tensor]


class StarGanLoss:
    """Owns the two phases; the training loop owns the schedule, optimisers and DDP.

    ``base`` (filter_residual generators, an extension): the differentiable classical
    conversion the generator corrects, called with source and target labels for every
    generator pass (the cycle pass converts back, from the target to the source).
    """

    def __init__(self, gen: Generator, disc: Discriminator, weights: LossWeights,
                 reg: str = "ggcl", n_patches: int = 64, tau: float = 0.07,
                 patch_seed: int = 0, base: BaseFn | None = None) -> None:
        if reg not in ("ggcl", "ggdr", "none"):
            raise ValueError(f"unknown regulariser {reg!r}")
        self.gen, self.disc, self.w, self.reg = gen, disc, weights, reg
        self.base = base
        self.n_patches, self.tau = n_patches, tau
        self.pool = nn.AvgPool2d(2)
        # GGCL's patch locations have their own generator, so runs that differ only in the
        # regulariser draw the same target kernels and penalty weights from torch's
        self.patch_rng = torch.Generator().manual_seed(patch_seed)
        self.spectral = SpectralTargets(gen.config.c_dim) if weights.spectral > 0 else None
        #: the targets come from a real archive (spectral_data) and stay as they are: the
        #: training batches do not update them, and the paired warm-up uses the term too
        self.spectral_fixed = False

    def generate(self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                 pixel_mm: Sequence[float] | None = None, return_feature: bool = False,
                 ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """G(x) towards ``target``; with a base filter, the filter's conversion of x from
        ``source`` to ``target`` is computed first and given to the generator."""
        base = None
        if self.base is not None:
            base = self.base(x, source, target, pixel_mm or [0.0] * len(x))
        return self.gen(x, target, return_feature=return_feature, base=base)

    def regulariser(self, d_map: torch.Tensor, g_feat: torch.Tensor) -> torch.Tensor:
        """GGCL or GGDR between D's label map (query) and the DETACHED generator feature."""
        q, k = self.pool(d_map), self.pool(g_feat.detach())
        if self.reg == "ggcl":
            return patch_nce(q, k, self.n_patches, self.tau, self.patch_rng)
        return ggdr(q, k)

    def d_step(self, real: torch.Tensor, label: torch.Tensor, target: torch.Tensor,
               pixel_mm: Sequence[float] | None = None,
               ) -> tuple[torch.Tensor, dict[str, float]]:
        """Discriminator loss for one batch (labels as class indices)."""
        with torch.no_grad():
            fake, g_feat = self.generate(real, label, target, pixel_mm,  # type: ignore[misc]
                                         return_feature=True)
        if self.spectral is not None and not self.spectral_fixed:
            self.spectral.update(real, label, pixel_mm)
        out_real, cls_real, _ = self.disc(real)
        out_fake, _, d_map = self.disc(fake.detach())
        adv = -out_real.mean() + out_fake.mean()
        cls = F.cross_entropy(cls_real.float(), label)
        gp = gradient_penalty(self.disc, real, fake)
        loss = adv + self.w.cls * cls + self.w.gp * gp
        stats = {"D/adv": _num(adv), "D/cls": _num(cls), "D/gp": _num(gp)}
        if self.reg != "none":
            r = self.regulariser(d_map, g_feat)
            loss = loss + self.w.reg * r
            stats[f"D/{self.reg}"] = _num(r)
        stats["D/loss"] = _num(loss)
        return loss, stats

    def d_cls_warmup_step(self, real: torch.Tensor, label: torch.Tensor,
                          pixel_mm: Sequence[float] | None = None,
                          ) -> tuple[torch.Tensor, dict[str, float]]:
        """Extension (``d_cls_warmup_iters``): only D's domain-classification loss on real
        slices, before the generator trains. StarGAN's generator learns a kernel only through
        this classifier; while it is at chance, the cycle loss holds a residual generator at
        the identity (docs/training.md, "Unpaired training that learns"). The paper has no
        such phase."""
        if self.spectral is not None and not self.spectral_fixed:
            self.spectral.update(real, label, pixel_mm)
        cls = F.cross_entropy(self.disc(real)[1].float(), label)
        return self.w.cls * cls, {"D/cls": _num(cls)}

    def warmup_step(self, real: torch.Tensor, target: torch.Tensor, real_target: torch.Tensor,
                    label: torch.Tensor | None = None, pixel_mm: Sequence[float] | None = None,
                    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Extension (paired data only): generator-only L1 to the real target slice.

        Used for the first ``g_warmup_iters`` iterations of a paired run, before the
        discriminator exists for the generator: a supervised start that a short (CPU) budget can
        afford; the paper has no such phase.
        """
        fake = self.generate(real, target if label is None else label, target, pixel_mm)
        assert isinstance(fake, torch.Tensor)
        paired = (fake - real_target).abs().mean()
        loss, stats = self.w.paired * paired, {"G/paired_l1": _num(paired)}
        if self.spectral is not None and self.spectral_fixed:  # a real archive's targets
            spec = self.spectral.loss(fake, target, pixel_mm, source=real)
            loss = loss + self.w.spectral * spec
            stats["G/spectral"] = _num(spec)
        return loss, stats

    def g_step(self, real: torch.Tensor, label: torch.Tensor, target: torch.Tensor,
               real_target: torch.Tensor | None = None,
               pixel_mm: Sequence[float] | None = None,
               ) -> tuple[torch.Tensor, dict[str, float]]:
        """Generator loss: adversarial, target-domain classification, cycle (and paired L1)."""
        fake = self.generate(real, label, target, pixel_mm)
        assert isinstance(fake, torch.Tensor)
        out_fake, cls_fake, _ = self.disc(fake)
        adv = -out_fake.mean()
        cls = F.cross_entropy(cls_fake.float(), target)
        rec = self.generate(fake, target, label, pixel_mm)
        assert isinstance(rec, torch.Tensor)
        cyc = (real - rec).abs().mean()
        loss = self.w.adv * adv + self.w.cls * cls + self.w.cyc * cyc
        stats = {"G/adv": _num(adv), "G/cls": _num(cls), "G/cyc": _num(cyc)}
        if self.spectral is not None:
            spec = self.spectral.loss(fake, target, pixel_mm, source=real)
            loss = loss + self.w.spectral * spec
            stats["G/spectral"] = _num(spec)
        if real_target is not None and self.w.paired > 0:
            paired = (fake - real_target).abs().mean()
            loss = loss + self.w.paired * paired
            stats["G/paired_l1"] = _num(paired)
        stats["G/loss"] = _num(loss)
        return loss, stats
