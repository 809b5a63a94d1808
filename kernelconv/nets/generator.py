"""The GGCL paper's StarGAN generator (Choi et al. 2023, Sec. "Architecture improvements").

Layer by layer (defaults = the paper; see shared notes on the reference implementation):

* input: 1 image channel + ``c_dim`` channels holding the one-hot target label tiled over H x W;
* conv7x7 (-> ``conv_dim``), InstanceNorm (affine), ReLU; no convolution has a bias;
* ``n_down`` x [conv4x4 stride 2 doubling channels, IN, ReLU];
* ``n_res`` residual blocks [conv3x3, IN, ReLU, conv3x3, IN] + identity;
* ``n_down`` x [conv3x3 to 2x channels, PixelShuffle(2) (-> half the channels), IN, ReLU]
  (instead of StarGAN's transposed convolutions, which leave checkerboard artefacts);
* conv7x7 (-> 1), tanh.

The output of the FIRST upsampling block (128 channels at H/2 for the paper's widths) is the
feature map GGCL compares with the discriminator's semantic label map; ``forward(...,
return_feature=True)`` returns it too. At 512 x 512 the paper configuration has 9.23 M parameters
and costs about 176 GMAC (352 GFLOP) per slice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class GeneratorConfig:
    """Construction arguments; stored in model files so a model rebuilds itself."""

    c_dim: int = 3
    conv_dim: int = 64
    n_down: int = 2
    n_res: int = 6

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        known = {k: int(data[k]) for k in ("c_dim", "conv_dim", "n_down", "n_res") if k in data}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown generator arguments: {', '.join(sorted(unknown))}")
        cfg = cls(**known)
        if min(cfg.c_dim, cfg.conv_dim, cfg.n_down) < 1 or cfg.n_res < 0:
            raise ValueError(f"invalid generator arguments: {cfg}")
        return cfg

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this (2 ** n_down)."""
        return 1 << self.n_down


def _norm(ch: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(ch, affine=True, track_running_stats=False)


class ResidualBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, 1, bias=False), _norm(ch), nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, 1, 1, bias=False), _norm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpBlock(nn.Module):
    """conv3x3 to 2x channels, PixelShuffle(2) to half the input channels, IN, ReLU."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, 2 * ch, 3, 1, 1, bias=False)
        self.shuffle = nn.PixelShuffle(2)
        self.norm = _norm(ch // 2)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.shuffle(self.conv(x))))


class Generator(nn.Module):
    """StarGAN generator with the GGCL paper's changes. Input and output in [-1, 1]."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        cfg = config or GeneratorConfig()
        self.config = cfg
        ch = cfg.conv_dim
        layers: list[nn.Module] = [
            nn.Conv2d(1 + cfg.c_dim, ch, 7, 1, 3, bias=False), _norm(ch), nn.ReLU(inplace=True),
        ]
        for _ in range(cfg.n_down):
            layers += [nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False), _norm(2 * ch),
                       nn.ReLU(inplace=True)]
            ch *= 2
        self.encoder = nn.Sequential(*layers)
        self.trunk = nn.Sequential(*[ResidualBlock(ch) for _ in range(cfg.n_res)])
        ups: list[nn.Module] = []
        for _ in range(cfg.n_down):
            ups.append(UpBlock(ch))
            ch //= 2
        self.decoder = nn.ModuleList(ups)
        self.head = nn.Sequential(nn.Conv2d(ch, 1, 7, 1, 3, bias=False), nn.Tanh())

    @property
    def feature_channels(self) -> int:
        """Channels of the first decoder feature map (128 for the paper's widths)."""
        return self.config.conv_dim * (1 << self.config.n_down) // 2

    def label_planes(self, labels: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """One-hot (B, c_dim) or index (B,) labels -> (B, c_dim, H, W) tiled planes."""
        if labels.dim() == 1:
            labels = nn.functional.one_hot(labels.long(), self.config.c_dim)
        return labels.float()[:, :, None, None].expand(
            -1, -1, height, width
        )

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor, return_feature: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Translate ``x`` (B, 1, H, W) to the target ``labels``.

        H and W must be multiples of ``config.size_multiple``. With ``return_feature`` the first
        decoder feature map (B, feature_channels, H/2**(n_down-1), ...) is returned as well.
        """
        planes = self.label_planes(labels, x.shape[-2], x.shape[-1]).to(x.dtype)
        h = self.trunk(self.encoder(torch.cat([x, planes], dim=1)))
        feature = None
        for i, up in enumerate(self.decoder):
            h = up(h)
            if i == 0:
                feature = h
        out = self.head(h)
        if return_feature:
            assert feature is not None
            return out, feature
        return out
