"""The GGCL paper's U-Net discriminator (Choi et al. 2023, Sec. "Architecture improvements").

* Encoder: ``n_layers`` (7) x [spectral-norm conv4x4 stride 2, LeakyReLU(0.01)], channels
  1 -> 32 -> 64 -> ... -> 2048: the PatchGAN part.
* Heads on the deepest map: a spectral-norm 3x3 conv -> one real/fake score per patch, and a
  spectral-norm 3x3 conv -> ``c_dim`` domain logits averaged over space, so any input size whose
  sides are multiples of 2**n_layers works (the reference sizes this kernel for 512 only).
* Decoder: ``n_layers - 1`` (6) x [concatenate the encoder map of the same size (from the second
  layer on), spectral-norm conv1x1, PixelShuffle(2), LeakyReLU], ending at H/2 with
  ``feature_channels`` (128) channels: the "semantic label map" that GGCL compares with the
  generator's first decoder feature map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import spectral_norm


@dataclass(frozen=True)
class DiscriminatorConfig:
    c_dim: int = 3
    conv_dim: int = 32
    n_layers: int = 7
    max_dim: int = 2048
    feature_channels: int = 128

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiscriminatorConfig:
        return cls(**{k: int(v) for k, v in data.items()})

    def widths(self) -> list[int]:
        return [min(self.conv_dim * (1 << i), self.max_dim) for i in range(self.n_layers)]


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.01, inplace=True)


class Discriminator(nn.Module):
    """Returns (patch scores (B,1,h,w), domain logits (B,c_dim), label map (B,F,H/2,W/2))."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        cfg = config or DiscriminatorConfig()
        self.config = cfg
        widths = cfg.widths()
        self.encoder = nn.ModuleList()
        prev = 1
        for w in widths:
            self.encoder.append(nn.Sequential(spectral_norm(nn.Conv2d(prev, w, 4, 2, 1)), _act()))
            prev = w
        deepest = widths[-1]
        self.patch_head = spectral_norm(nn.Conv2d(deepest, 1, 3, 1, 1, bias=False))
        self.cls_head = spectral_norm(nn.Conv2d(deepest, cfg.c_dim, 3, 1, 1, bias=False))
        self.decoder = nn.ModuleList()
        d_in = deepest
        for j in range(cfg.n_layers - 1):
            skip = widths[cfg.n_layers - 1 - j] if j > 0 else 0
            last = j == cfg.n_layers - 2
            out_ch = cfg.feature_channels if last else widths[cfg.n_layers - 2 - j]
            self.decoder.append(nn.Sequential(
                spectral_norm(nn.Conv2d(d_in + skip, 4 * out_ch, 1, 1, 0)),
                nn.PixelShuffle(2), _act()))
            d_in = out_ch

    @property
    def size_multiple(self) -> int:
        return 1 << self.config.n_layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = []
        h = x
        for layer in self.encoder:
            h = layer(h)
            feats.append(h)
        patch = self.patch_head(h)
        logits = self.cls_head(h).mean(dim=(2, 3))
        d = h
        n = len(feats)
        for j, layer in enumerate(self.decoder):
            if j > 0:
                d = torch.cat([d, feats[n - 1 - j]], dim=1)
            d = layer(d)
        return patch, logits, d
