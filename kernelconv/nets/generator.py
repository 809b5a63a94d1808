"""The GGCL paper's StarGAN generator (Choi et al. 2023, Sec. "Architecture improvements").

Layer by layer (defaults = the paper; see shared notes on the reference implementation):

* input: 1 image channel + ``c_dim`` channels holding the one-hot target label tiled over H x W;
* conv7x7 (-> ``conv_dim``), InstanceNorm (affine), ReLU; no convolution has a bias;
* ``n_down`` x [conv4x4 stride 2 doubling channels, IN, ReLU];
* ``n_res`` residual blocks [conv3x3, IN, ReLU, conv3x3, IN] + identity;
* ``n_down`` x [conv3x3 to 2x channels, PixelShuffle(2) (-> half the channels), IN, ReLU]
  (instead of StarGAN's transposed convolutions, which leave checkerboard artefacts);
  extension ``upsample="resize"``: [nearest-neighbour x2, conv3x3 to half the channels, IN,
  ReLU] instead (resize-convolution, Odena et al. 2016): a flat feature map stays flat,
  where PixelShuffle's four sub-pixel phases give it a period-2 pattern unless their filters
  are learnt equal (docs/training.md);
* conv7x7 (-> 1), tanh.

The output of the FIRST upsampling block (128 channels at H/2 for the paper's widths) is the
feature map GGCL compares with the discriminator's semantic label map; ``forward(...,
return_feature=True)`` returns it too. At 512 x 512 the paper configuration has 9.23 M parameters
and costs about 176 GMAC (352 GFLOP) per slice.

HU-preserving variants (an extension beyond the paper; ``GeneratorConfig.output``):

* ``direct`` (the paper, the default): output = tanh(conv7x7(h)). Instance normalisation
  discards the image's absolute level, so absolute HU must be rebuilt from content: adding
  50 HU to an input moves this output by 0 HU (measured, docs/training.md).
* ``residual``: output = input + HP(conv7x7(h)).
* ``filter_residual``: output = base + HP(conv7x7(h)), where ``base`` is the classical
  MTF-ratio filter's conversion of the input (computed by the engine, or by the training loop,
  with the pixel spacing; the network also sees it as a second input channel).

HP is ``1 - Gaussian(sigma = highpass_px pixels)`` (identity when 0): the correction carries
no low frequencies, so local mean HU is exactly the base's, and every kernel's MTF(0) = 1 is
respected by construction. The last convolution starts at zero, so an untrained model is the
identity (or the filter) and training can only add.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

OUTPUTS = ("direct", "residual", "filter_residual")
UPSAMPLES = ("pixelshuffle", "resize")


@dataclass(frozen=True)
class GeneratorConfig:
    """Construction arguments; stored in model files so a model rebuilds itself."""

    c_dim: int = 3
    conv_dim: int = 64
    n_down: int = 2
    n_res: int = 6
    output: str = "direct"  # direct (the paper) | residual | filter_residual (extensions)
    highpass_px: float = 0.0  # sigma of the Gaussian the correction is high-passed by; 0: off
    upsample: str = "pixelshuffle"  # pixelshuffle (the paper) | resize (extension)

    def to_dict(self) -> dict[str, Any]:
        """The arguments; the paper's generator is written exactly as before the variants
        existed, so its model files stay readable by older kernelconv versions."""
        d: dict[str, Any] = asdict(self)
        if self.output == "direct" and not self.highpass_px:
            del d["output"], d["highpass_px"]
        if self.upsample == "pixelshuffle":
            del d["upsample"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        ints: dict[str, Any] = {k: int(data[k]) for k in ("c_dim", "conv_dim", "n_down", "n_res")
                                if k in data}
        extra: dict[str, Any] = {}
        if "output" in data:
            extra["output"] = str(data["output"])
        if "highpass_px" in data:
            extra["highpass_px"] = float(data["highpass_px"])
        if "upsample" in data:
            extra["upsample"] = str(data["upsample"])
        unknown = set(data) - set(ints) - set(extra)
        if unknown:
            raise ValueError(f"unknown generator arguments: {', '.join(sorted(unknown))}")
        cfg = cls(**ints, **extra)
        if min(cfg.c_dim, cfg.conv_dim, cfg.n_down) < 1 or cfg.n_res < 0:
            raise ValueError(f"invalid generator arguments: {cfg}")
        if cfg.output not in OUTPUTS:
            raise ValueError(f"unknown generator output {cfg.output!r} (known: "
                             f"{', '.join(OUTPUTS)}; a newer kernelconv may know it)")
        if cfg.highpass_px < 0 or (cfg.highpass_px and cfg.output == "direct"):
            raise ValueError("highpass_px needs a residual output and must be >= 0")
        if cfg.upsample not in UPSAMPLES:
            raise ValueError(f"unknown generator upsampling {cfg.upsample!r} (known: "
                             f"{', '.join(UPSAMPLES)}; a newer kernelconv may know it)")
        return cfg

    @property
    def needs_base(self) -> bool:
        """Whether the network takes the filter's conversion as a second input."""
        return self.output == "filter_residual"

    @property
    def in_channels(self) -> int:
        return (2 if self.needs_base else 1) + self.c_dim

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


class ResizeUpBlock(nn.Module):
    """Extension: nearest-neighbour x2, conv3x3 to half the input channels, IN, ReLU."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(ch, ch // 2, 3, 1, 1, bias=False)
        self.norm = _norm(ch // 2)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.up(x))))


class HighPass(nn.Module):
    """x - Gaussian(x), a depthwise separable blur with reflect padding (sigma in pixels)."""

    def __init__(self, sigma_px: float) -> None:
        super().__init__()
        radius = max(1, int(math.ceil(3.0 * sigma_px)))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        g = torch.exp(-0.5 * (t / sigma_px) ** 2)
        self.radius = radius
        self.register_buffer("taps", (g / g.sum()).reshape(1, 1, -1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape[1:]
        r = min(self.radius, h - 1, w - 1)
        taps: torch.Tensor = self.taps  # type: ignore[assignment]
        if r < self.radius:  # tiny images: a shorter kernel, renormalised
            taps = taps[..., self.radius - r:self.radius + r + 1]
            taps = taps / taps.sum()
        y = nn.functional.pad(x, (r, r, r, r), mode="reflect")
        kh = taps.to(x.dtype).reshape(1, 1, 1, -1).expand(c, 1, 1, -1)
        kv = taps.to(x.dtype).reshape(1, 1, -1, 1).expand(c, 1, -1, 1)
        y = nn.functional.conv2d(y, kh, groups=c)
        y = nn.functional.conv2d(y, kv, groups=c)
        return x - y


class Generator(nn.Module):
    """StarGAN generator with the GGCL paper's changes. Input and output in [-1, 1]."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        cfg = config or GeneratorConfig()
        self.config = cfg
        ch = cfg.conv_dim
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.in_channels, ch, 7, 1, 3, bias=False), _norm(ch),
            nn.ReLU(inplace=True),
        ]
        for _ in range(cfg.n_down):
            layers += [nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False), _norm(2 * ch),
                       nn.ReLU(inplace=True)]
            ch *= 2
        self.encoder = nn.Sequential(*layers)
        self.trunk = nn.Sequential(*[ResidualBlock(ch) for _ in range(cfg.n_res)])
        ups: list[nn.Module] = []
        block = ResizeUpBlock if cfg.upsample == "resize" else UpBlock
        for _ in range(cfg.n_down):
            ups.append(block(ch))
            ch //= 2
        self.decoder = nn.ModuleList(ups)
        if cfg.output == "direct":
            self.head = nn.Sequential(nn.Conv2d(ch, 1, 7, 1, 3, bias=False), nn.Tanh())
        else:  # a correction: starts at zero, so the untrained model is the identity/filter
            last = nn.Conv2d(ch, 1, 7, 1, 3, bias=False)
            nn.init.zeros_(last.weight)
            self.head = nn.Sequential(last)
        self.highpass = HighPass(cfg.highpass_px) if cfg.highpass_px > 0 else None

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

    def network_input(self, x: torch.Tensor, labels: torch.Tensor,
                      base: torch.Tensor | None = None) -> torch.Tensor:
        """The first layer's input: image, the filter's conversion (filter_residual only) and
        the tiled target label."""
        planes = self.label_planes(labels, x.shape[-2], x.shape[-1]).to(x.dtype)
        if self.config.needs_base:
            if base is None:
                raise ValueError("a filter_residual generator needs the filter's conversion "
                                 "(base)")
            return torch.cat([x, base.to(x.dtype), planes], dim=1)
        return torch.cat([x, planes], dim=1)

    def compose(self, head_out: torch.Tensor, x: torch.Tensor,
                base: torch.Tensor | None = None) -> torch.Tensor:
        """The output from the head's: itself (direct), or base + high-passed correction."""
        if self.config.output == "direct":
            return head_out
        correction = self.highpass(head_out) if self.highpass is not None else head_out
        anchor = base if self.config.needs_base else x
        assert anchor is not None
        return anchor.to(correction.dtype) + correction

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor, return_feature: bool = False,
        base: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Translate ``x`` (B, 1, H, W) to the target ``labels``.

        H and W must be multiples of ``config.size_multiple``. ``base`` (B, 1, H, W): the
        filter's conversion of ``x`` to the same targets, for ``filter_residual``. With
        ``return_feature`` the first decoder feature map (B, feature_channels,
        H/2**(n_down-1), ...) is returned as well.
        """
        h = self.trunk(self.encoder(self.network_input(x, labels, base)))
        feature = None
        for i, up in enumerate(self.decoder):
            h = up(h)
            if i == 0:
                feature = h
        out = self.compose(self.head(h), x, base)
        if return_feature:
            assert feature is not None
            return out, feature
        return out
