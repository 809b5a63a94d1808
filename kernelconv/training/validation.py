"""Periodic validation on a held-out paired set (e.g. simulated patients of another seed).

For every study that holds several training kernels at the same slice positions, a few middle
slices are loaded once; at each validation the generator converts them in every direction
between the kernels present, and PSNR/SSIM (the paper's setting: HU clipped to [-1024, 3071],
data range 4095) against the real target-kernel slices are averaged per direction, with the
noise SD ratio (converted / true target, in the target's soft tissue, as ``kernelconv
evaluate`` measures it without ground truth): the number that tells whether a kernel's noise
was learnt, which PSNR alone does not.

The generator runs through the same engine code as `kernelconv convert`
(:class:`~kernelconv.engines.torch_engine.ModuleEngine`: the same HU normalisation, padding
and crop), so validation scores exactly what users get.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kernelconv.dicom.dataset import read_hu_slices
from kernelconv.dicom.discovery import discover
from kernelconv.errors import InputError, KernelconvError
from kernelconv.evaluation.evaluate import local_noise, roi_masks
from kernelconv.evaluation.metrics import psnr, ssim
from kernelconv.kernels import KernelAliases
from kernelconv.modelfile import ModelInfo
from kernelconv.preview import window


class PairedValidation:
    def __init__(self, folder: Path, domains: list[str],
                 kernel_map: Mapping[str, str] | None = None, max_slices: int = 4) -> None:
        table = KernelAliases.for_domains(domains, kernel_map)
        by_study: dict[str, dict[int, dict[float, Path]]] = defaultdict(dict)
        for series in discover(folder).series:
            if series.error or series.multiframe or not series.kernel:
                continue
            try:
                d = domains.index(table.resolve(series.kernel))
            except KernelconvError:
                continue
            by_study[series.study_uid][d] = {round(float(s.position or 0), 3): s.path
                                             for s in series.slices}
        self.domains = domains
        # (study, domain) -> (n, H, W) HU at the shared positions
        self.images: list[dict[int, np.ndarray]] = []
        for kernels in by_study.values():
            if len(kernels) < 2:
                continue
            common = sorted(set.intersection(*(set(p) for p in kernels.values())))
            if not common:
                continue
            mid = len(common) // 2
            chosen = common[max(0, mid - max_slices // 2):][:max_slices]
            self.images.append({
                d: np.stack(read_hu_slices([paths[z] for z in chosen])[0])
                for d, paths in kernels.items()})
        if not self.images:
            raise InputError(f"{folder}: no paired validation data (a study with several of "
                             f"the kernels {', '.join(domains)} at the same positions)")
        # the reference side of the noise ratio depends only on the data: once, here.
        # Per (study, domain): each slice's soft-tissue mask (None if under 100 pixels) and
        # the reference's noise power in it
        self.soft: list[dict[int, list[tuple[np.ndarray, float] | None]]] = [
            {d: [_soft_noise(r) for r in stack] for d, stack in study.items()}
            for study in self.images]

    @torch.no_grad()
    def run(self, gen: torch.nn.Module, device: torch.device,
            kernel_responses: list[dict[str, Any]] | None = None) -> dict[str, float]:
        """Scores per direction; ``kernel_responses``: the base filter's windows when they
        are not the table's (learnt windows, stored in the model as an export would)."""
        from kernelconv.engines.torch_engine import ModuleEngine

        was_training = gen.training
        gen.eval()
        net: Any = getattr(gen, "_orig_mod", gen)  # the module under torch.compile
        info = ModelInfo(name="validation", domains=list(self.domains),
                         arch_args=net.config.to_dict(),
                         kernel_responses=list(kernel_responses or []))
        engine = ModuleEngine(net, info)
        scores: dict[str, list[float]] = defaultdict(list)
        self.samples: dict[str, np.ndarray] = {}
        for study, soft_noise in zip(self.images, self.soft, strict=True):
            for s, src in study.items():
                for t, ref in study.items():
                    if t == s:
                        continue
                    pred = engine.convert(src, self.domains[s], self.domains[t])
                    name = f"{self.domains[s]}->{self.domains[t]}"
                    if name not in self.samples:  # source | converted | true target, lung window
                        self.samples[name] = np.concatenate(
                            [window(src[0], -700, 1500), window(pred[0], -700, 1500),
                             window(ref[0], -700, 1500)], axis=1)
                    noise_p = noise_r = 0.0
                    for p, r, sn in zip(pred, ref, soft_noise[t], strict=True):
                        scores[f"val/{name}/psnr"].append(psnr(p, r))
                        scores[f"val/{name}/ssim"].append(ssim(p, r))
                        if sn is not None:
                            noise_p += float(np.square(local_noise(p)[sn[0]]).mean())
                            noise_r += sn[1]
                    if noise_r > 0:
                        scores[f"val/{name}/noise_ratio"].append(float(np.sqrt(noise_p / noise_r)))
        if was_training:
            gen.train()
        return {k: float(np.mean(v)) for k, v in scores.items()}


def _soft_noise(ref: np.ndarray) -> tuple[np.ndarray, float] | None:
    """A reference slice's soft-tissue mask and its noise power there (None: too few pixels)."""
    soft = roi_masks(ref.astype(np.float64), None, None)[0]["soft tissue"]
    if soft.sum() < 100:
        return None
    return soft, float(np.square(local_noise(ref)[soft]).mean())
