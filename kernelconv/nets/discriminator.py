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

Extension (``spectral_norm``, default ``"all"`` = the paper): ``"no_heads"`` leaves the
patch and domain heads without spectral normalisation, ``"none"`` removes it everywhere (the
original StarGAN's WGAN-GP discriminator; the gradient penalty still bounds it). With it on
every layer, activations shrink about twofold per stride-2 layer at initialisation, and the
domain head of a reduced-width discriminator starts, and on a CPU budget stays, at chance
(docs/training.md, "Unpaired training that learns").

Extension (``antialias``, default off = the paper): each encoder step is conv4x4 stride 1,
LeakyReLU, then a [1 2 1] x [1 2 1] / 16 blur sampled at stride 2 (anti-aliased downsampling,
Zhang 2019). A stride-2 convolution aliases a period-2 pattern to a constant whose sign is the
pattern's phase, a cheap knob by which unpaired generators here steered the domain classifier
(docs/training.md); the blurred step reads the pattern as texture, whatever its phase. It costs
about four times the encoder's arithmetic.

Extension (``spectral_head``, default off = the paper): the discriminator also reads each
image's radial power spectrum (:class:`SpectralHead`; :mod:`kernelconv.nets.spectrum`) through a small MLP whose
real/fake score is added to every patch score and whose domain logits are added to the
domain head's. A kernel IS a radial filter, so its signature is the spectrum; the
convolutional encoder reads it only slowly, and a generator made of learnt kernel windows
(``g_base: learned``) otherwise drifts at the frequencies the encoder does not weigh
(docs/training.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from kernelconv.nets.spectrum import N_RINGS, log_ring_power


@dataclass(frozen=True)
class DiscriminatorConfig:
    c_dim: int = 3
    conv_dim: int = 32
    n_layers: int = 7
    max_dim: int = 2048
    feature_channels: int = 128
    spectral_norm: str = "all"  # all (the paper) | no_heads | none (extensions)
    highpass_gain: int = 0  # extension: also see gain x (x - its 3 x 3 local mean); 0: off
    #: extension: every stride-2 encoder convolution becomes conv (stride 1), activation,
    #: then a [1 2 1] x [1 2 1] / 16 blur sampled at stride 2 (anti-aliased downsampling,
    #: Zhang 2019); False: the paper's conv4x4 stride 2
    antialias: bool = False
    #: extension: a radial-power-spectrum branch (SpectralHead) beside the encoder's heads;
    #: False: the paper
    spectral_head: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = asdict(self)
        for key, paper in (("spectral_norm", "all"), ("highpass_gain", 0),
                           ("antialias", False), ("spectral_head", False)):
            if d[key] == paper:  # written as before the switch existed
                del d[key]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiscriminatorConfig:
        casts: dict[str, Any] = {"spectral_norm": str, "antialias": bool,
                                 "spectral_head": bool}  # the rest: int
        return cls(**{k: casts.get(k, int)(v) for k, v in data.items()})

    def widths(self) -> list[int]:
        return [min(self.conv_dim * (1 << i), self.max_dim) for i in range(self.n_layers)]


SPECTRAL_NORM = ("all", "no_heads", "none")


def _plain(module: nn.Conv2d) -> nn.Conv2d:
    return module


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.01, inplace=True)


class BlurDown(nn.Module):
    """[1 2 1] x [1 2 1] / 16 per channel, sampled at stride 2 (reflect padding). Its response
    is zero at the Nyquist frequency, so a period-2 pattern cannot alias to a constant."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :]) / 16.0
        self.channels = channels
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel: torch.Tensor = self.kernel  # type: ignore[assignment]
        y = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        return nn.functional.conv2d(y, kernel.to(x.dtype), stride=2, groups=self.channels)


def _down(prev: int, width: int, norm: Any, antialias: bool) -> nn.Sequential:
    """One encoder step to half the size: the paper's conv4x4 stride 2 + LeakyReLU, or the
    anti-aliased conv4x4 stride 1 + LeakyReLU + BlurDown (extension)."""
    if not antialias:
        return nn.Sequential(norm(nn.Conv2d(prev, width, 4, 2, 1)), _act())
    return nn.Sequential(nn.ZeroPad2d((1, 2, 1, 2)), norm(nn.Conv2d(prev, width, 4, 1, 0)),
                         _act(), BlurDown(width))


class SpectralHead(nn.Module):
    """Extension: (real/fake score (B,), domain logits (B, c_dim)) from each image's log ring
    power (:func:`kernelconv.nets.spectrum.log_ring_power`), each through its own MLP."""

    def __init__(self, c_dim: int, width: int = 128) -> None:
        super().__init__()

        def mlp(out: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(N_RINGS, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, out))

        # two separate MLPs: the gradient penalty bounds the real/fake score's input gradient,
        # which is steep for log power at quiet frequencies; sharing layers with the domain
        # classifier (which the penalty does not see) would shrink the classifier with it
        self.adv = mlp(1)
        self.cls = mlp(c_dim)

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N_RINGS) log10 ring power (kernelconv.nets.spectrum)."""
        return log_ring_power(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (self.spectrum(x) + 5.0) / 2.0  # about -1..1 for CT noise and anatomy
        return self.adv(z)[:, 0], self.cls(z)


class Discriminator(nn.Module):
    """Returns (patch scores (B,1,h,w), domain logits (B,c_dim), label map (B,F,H/2,W/2))."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        cfg = config or DiscriminatorConfig()
        if cfg.spectral_norm not in SPECTRAL_NORM:
            raise ValueError(f"spectral_norm must be one of {', '.join(SPECTRAL_NORM)}")
        self.config = cfg
        body = spectral_norm if cfg.spectral_norm != "none" else _plain
        head = spectral_norm if cfg.spectral_norm == "all" else _plain
        widths = cfg.widths()
        self.encoder = nn.ModuleList()
        prev = 2 if cfg.highpass_gain else 1
        for w in widths:
            self.encoder.append(_down(prev, w, body, cfg.antialias))
            prev = w
        deepest = widths[-1]
        self.patch_head = head(nn.Conv2d(deepest, 1, 3, 1, 1, bias=False))
        self.cls_head = head(nn.Conv2d(deepest, cfg.c_dim, 3, 1, 1, bias=False))
        self.decoder = nn.ModuleList()
        d_in = deepest
        for j in range(cfg.n_layers - 1):
            skip = widths[cfg.n_layers - 1 - j] if j > 0 else 0
            last = j == cfg.n_layers - 2
            out_ch = cfg.feature_channels if last else widths[cfg.n_layers - 2 - j]
            self.decoder.append(nn.Sequential(
                body(nn.Conv2d(d_in + skip, 4 * out_ch, 1, 1, 0)),
                nn.PixelShuffle(2), _act()))
            d_in = out_ch
        self.spectral = SpectralHead(cfg.c_dim) if cfg.spectral_head else None

    @property
    def size_multiple(self) -> int:
        return 1 << self.config.n_layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = []
        h = x
        if self.config.highpass_gain:
            local = nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
            h = torch.cat([x, self.config.highpass_gain * (x - local)], dim=1)
        for layer in self.encoder:
            h = layer(h)
            feats.append(h)
        patch = self.patch_head(h)
        logits = self.cls_head(h).mean(dim=(2, 3))
        if self.spectral is not None:
            adv, cls = self.spectral(x)
            patch = patch + adv[:, None, None, None].to(patch.dtype)
            logits = logits + cls.to(logits.dtype)
        d = h
        n = len(feats)
        for j, layer in enumerate(self.decoder):
            if j > 0:
                d = torch.cat([d, feats[n - 1 - j]], dim=1)
            d = layer(d)
        return patch, logits, d
