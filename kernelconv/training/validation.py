"""Periodic validation on a held-out paired set (e.g. simulated patients of another seed).

For every study that holds several training kernels at the same slice positions, a few middle
slices are loaded once; at each validation the generator converts them in every direction
between the kernels present, and PSNR/SSIM (the paper's setting: HU clipped to [-1024, 3071],
data range 4095) against the real target-kernel slices are averaged per direction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from kernelconv.dicom.dataset import read_hu_slices
from kernelconv.dicom.discovery import discover
from kernelconv.errors import InputError, KernelconvError
from kernelconv.evaluation.metrics import psnr, ssim
from kernelconv.hu import hu_to_unit, unit_to_hu
from kernelconv.kernels import KernelTable
from kernelconv.preview import window


class PairedValidation:
    def __init__(self, folder: Path, domains: list[str],
                 kernel_map: Mapping[str, str] | None = None, max_slices: int = 4) -> None:
        table = KernelTable.for_domains(domains, kernel_map)
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

    @torch.no_grad()
    def run(self, gen: torch.nn.Module, device: torch.device) -> dict[str, float]:
        was_training = gen.training
        gen.eval()
        scores: dict[str, list[float]] = defaultdict(list)
        self.samples: dict[str, np.ndarray] = {}
        for study in self.images:
            for s, src in study.items():
                x = torch.from_numpy(hu_to_unit(src))[:, None].to(device)
                h, w = x.shape[-2:]
                ph, pw = (-h) % 4, (-w) % 4
                xp = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
                for t, ref in study.items():
                    if t == s:
                        continue
                    labels = torch.full((len(src),), t, dtype=torch.long, device=device)
                    out = gen(xp, labels)[:, 0, :h, :w].float().cpu().numpy()
                    pred = unit_to_hu(out)
                    name = f"{self.domains[s]}->{self.domains[t]}"
                    if name not in self.samples:  # source | converted | true target, lung window
                        self.samples[name] = np.concatenate(
                            [window(src[0], -700, 1500), window(pred[0], -700, 1500),
                             window(ref[0], -700, 1500)], axis=1)
                    for p, r in zip(pred, ref, strict=True):
                        scores[f"val/{name}/psnr"].append(psnr(p, r))
                        scores[f"val/{name}/ssim"].append(ssim(p, r))
        if was_training:
            gen.train()
        return {k: float(np.mean(v)) for k, v in scores.items()}
