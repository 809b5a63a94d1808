"""HU-preserving generator variants (an extension): zero start, exact low frequencies, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from helpers import dicom_file, make_tiny_model

from kernelconv.dicom.dataset import decode_hu
from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.engines.torch_engine import TorchEngine
from kernelconv.hu_check import HuCheck, lowpass
from kernelconv.modelfile import read_info
from kernelconv.nets.generator import Generator, GeneratorConfig, HighPass


def real_slice(name: str = "693_UNCR.dcm") -> tuple[np.ndarray, float]:
    path = dicom_file(name)
    ds = pydicom.dcmread(path)
    return decode_hu(ds, path)[1], float(ds.PixelSpacing[0])


def test_untrained_residual_model_is_the_identity(tmp_path: Path) -> None:
    engine = TorchEngine(make_tiny_model(tmp_path / "r.safetensors", head_scale=None), "cpu")
    hu, px = real_slice()
    out = engine.convert(hu, "B70f", "B30f", px)
    # exact up to the [-1024, 3071] window and float32 rounding of the unit scale
    np.testing.assert_allclose(out, np.clip(hu, -1024, 3071), atol=0.01)


def test_untrained_filter_residual_model_is_the_filter(tmp_path: Path) -> None:
    engine = TorchEngine(make_tiny_model(tmp_path / "f.safetensors", output="filter_residual",
                                         head_scale=None), "cpu")
    # the base filter sees the input as stored, not clipped: a Canon lung kernel stores 11 %
    # of its pixels below -1024 HU, and clipping them first raised air and lung by ~7 HU
    canon = (Path(__file__).resolve().parent.parent / "examples" / "data" / "canon-phantom"
             / "phantom1" / "FC51" / "00000002.dcm")
    for hu, px in (real_slice(), (decode_hu(pydicom.dcmread(canon), canon)[1], 0.683)):
        expected = np.clip(FilterEngine(noise_limit=False).convert(hu, "B70f", "B30f", px),
                           -1024, 3071)
        out = engine.convert(hu, "B70f", "B30f", px)
        np.testing.assert_allclose(out, expected, atol=0.05)
    assert (hu < -1030).mean() > 0.05 and (hu <= -2000).mean() > 0.1  # noise and padding
    assert engine.description.startswith(
        "GGCL StarGAN generator, HU-preserving filter_residual variant (extension), model ")


@pytest.mark.parametrize("output", ["residual", "filter_residual"])
def test_a_random_correction_never_moves_local_mean_hu(tmp_path: Path, output: str) -> None:
    # a large random correction (far from trained) changes the image a lot, but not its
    # low frequencies: the high-pass guarantees it by construction
    engine = TorchEngine(make_tiny_model(tmp_path / "m.safetensors", output=output,
                                         highpass_px=4.0, head_scale=0.003), "cpu")
    hu, px = real_slice()
    out = engine.convert(hu, "B30f", "B70f", px)
    base = hu if output == "residual" else \
        FilterEngine(noise_limit=False).convert(hu, "B30f", "B70f", px)
    assert np.abs(out - base).mean() > 20.0  # it really does change the image
    check = HuCheck()
    check.add(np.clip(base, -1024, 3071), out, px)
    soft = check.bias_hu["soft tissue"]
    assert soft is not None and abs(soft) < 1.0, check.bias_hu


def test_the_paper_generator_is_unchanged_and_its_files_read_as_before(tmp_path: Path) -> None:
    cfg = GeneratorConfig()
    assert cfg.to_dict() == {"c_dim": 3, "conv_dim": 64, "n_down": 2, "n_res": 6}
    assert isinstance(Generator(cfg).head[-1], torch.nn.Tanh)
    info = read_info(make_tiny_model(tmp_path / "d.safetensors", output="direct",
                                     highpass_px=0.0))
    assert "output" not in info.arch_args
    assert GeneratorConfig.from_dict(info.arch_args).output == "direct"
    bundled = Path(__file__).resolve().parent.parent / "models" / "sim-paired-v1.safetensors"
    assert GeneratorConfig.from_dict(read_info(bundled).arch_args).output == "direct"


@torch.no_grad()
def test_resize_upsampling_keeps_flat_maps_flat_where_pixelshuffle_makes_a_pattern() -> None:
    from kernelconv.nets.generator import ResizeUpBlock, UpBlock

    torch.manual_seed(0)
    flat = torch.full((1, 8, 12, 12), 0.5) + torch.randn(1, 8, 1, 1)  # flat per channel

    def period2(out: torch.Tensor) -> float:  # spread between the four sub-pixel phases
        inner = out[..., 2:-2, 2:-2]  # away from the zero padding at the border
        phases = torch.stack([inner[..., i::2, j::2].mean(dim=(-2, -1))
                              for i in (0, 1) for j in (0, 1)])
        return float((phases.max(0).values - phases.min(0).values).abs().max())

    for _ in range(3):  # random weights: no chance of equal phase filters
        shuffle = UpBlock(8)
        assert period2(shuffle.shuffle(shuffle.conv(flat))) > 1e-3
        resize = ResizeUpBlock(8)
        assert period2(resize.conv(resize.up(flat))) < 1e-6
    # the whole generator: the same width and feature map for GGCL, fewer parameters
    ps = Generator(GeneratorConfig(conv_dim=8, n_res=1, output="residual", highpass_px=3.0))
    rs = Generator(GeneratorConfig(conv_dim=8, n_res=1, output="residual", highpass_px=3.0,
                                   upsample="resize"))
    x, lab = torch.randn(1, 1, 32, 32), torch.tensor([1])
    assert ps(x, lab, return_feature=True)[1].shape == rs(x, lab, return_feature=True)[1].shape
    assert sum(p.numel() for p in rs.parameters()) < sum(p.numel() for p in ps.parameters())
    cfg = rs.config
    assert cfg.to_dict()["upsample"] == "resize" and GeneratorConfig.from_dict(
        cfg.to_dict()) == cfg
    assert "upsample" not in ps.config.to_dict()  # model files of the paper's as before


def test_unknown_variant_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown generator output 'spectral'"):
        GeneratorConfig.from_dict({"c_dim": 3, "output": "spectral"})
    with pytest.raises(ValueError, match="highpass_px needs a residual output"):
        GeneratorConfig.from_dict({"c_dim": 3, "highpass_px": 2.0})
    with pytest.raises(ValueError, match="unknown generator upsampling 'bilinear'"):
        GeneratorConfig.from_dict({"c_dim": 3, "upsample": "bilinear"})


def test_highpass_removes_constants_and_keeps_fine_detail() -> None:
    hp = HighPass(4.0)
    flat = torch.full((1, 1, 64, 64), 0.25)
    assert float(hp(flat).abs().max()) < 1e-6
    checker = torch.ones(1, 1, 64, 64)
    checker[..., ::2, :] = -1.0
    assert float((hp(checker) - checker).abs().max()) < 0.01


def test_lowpass_of_the_check_is_in_millimetres() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(0, 50, (128, 128))
    # the same physical sigma at half the pixel size smooths twice as many pixels
    fine = lowpass(img, 0.5)
    coarse = lowpass(img, 1.0)
    assert fine.std() < coarse.std()


@pytest.mark.parametrize("upsample", ["pixelshuffle", "resize"])
def test_onnx_graph_of_a_filter_residual_model_takes_the_base_and_matches_torch(
        tmp_path: Path, upsample: str) -> None:
    from kernelconv.engines.onnx_engine import OnnxEngine, export_onnx

    model = make_tiny_model(tmp_path / "fr.safetensors", output="filter_residual",
                            highpass_px=3.0, upsample=upsample)
    onnx_path = export_onnx(model, tmp_path / "fr.onnx")
    hu, px = real_slice()
    torch_out = TorchEngine(model, "cpu").convert(hu, "B30f", "B70f", px)
    onnx_out = OnnxEngine(onnx_path, "cpu").convert(hu, "B30f", "B70f", px)
    assert np.abs(torch_out - onnx_out).max() < 0.1


def test_discriminator_extensions_and_the_papers_config_file_shape() -> None:
    from kernelconv.nets.discriminator import Discriminator, DiscriminatorConfig

    paper = DiscriminatorConfig(c_dim=3, conv_dim=4, n_layers=5, feature_channels=8)
    assert set(paper.to_dict()) == {"c_dim", "conv_dim", "n_layers", "max_dim",
                                    "feature_channels"}  # as before the switches existed
    x = torch.randn(2, 1, 64, 64)
    shapes = None
    for sn, gain, aa in (("all", 0, False), ("no_heads", 0, False), ("none", 50, False),
                         ("all", 50, False), ("all", 50, True), ("none", 0, True)):
        cfg = DiscriminatorConfig(c_dim=3, conv_dim=4, n_layers=5, feature_channels=8,
                                  spectral_norm=sn, highpass_gain=gain, antialias=aa)
        assert DiscriminatorConfig.from_dict(cfg.to_dict()) == cfg
        disc = Discriminator(cfg)
        names = {n for n, _ in disc.named_parameters()}
        assert any("encoder" in n and "weight_orig" in n for n in names) == (sn != "none")
        assert ("cls_head.weight_orig" in names) == (sn == "all")
        first = [m for m in disc.encoder[0] if isinstance(m, torch.nn.Conv2d)][0]
        assert first.in_channels == (2 if gain else 1)
        assert first.stride == ((1, 1) if aa else (2, 2))
        out = tuple(t.shape for t in disc(x))
        assert shapes is None or out == shapes
        shapes = out
    with pytest.raises(ValueError, match="spectral_norm"):
        Discriminator(DiscriminatorConfig(spectral_norm="some"))


@torch.no_grad()
def test_antialiased_discriminator_cannot_be_steered_by_the_phase_of_a_grid() -> None:
    """A period-2 stripe and the same stripe shifted by one pixel (its negation): the paper's
    stride-2 convolution aliases them to opposite constants, so its features and domain
    logits differ; the anti-aliased encoder reads both as the same texture."""
    from kernelconv.nets.discriminator import Discriminator, DiscriminatorConfig

    torch.manual_seed(0)
    base = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 128, 128), 9, 1, 4) * 0.2
    stripe = torch.ones(1, 1, 128, 128) * 0.01
    stripe[..., 1::2] *= -1
    seen = {}
    for aa in (False, True):
        torch.manual_seed(1)
        disc = Discriminator(DiscriminatorConfig(c_dim=3, conv_dim=8, n_layers=5,
                                                 feature_channels=8, spectral_norm="none",
                                                 highpass_gain=50, antialias=aa))
        plus, minus = disc(base + stripe), disc(base - stripe)
        change = float((plus[1] - minus[1]).abs().max())  # domain logits
        feat = disc.encoder[0](torch.cat([base + stripe, 50 * stripe], 1))
        feat_neg = disc.encoder[0](torch.cat([base - stripe, -50 * stripe], 1))
        inner = float((feat - feat_neg)[..., 2:-2, 2:-2].abs().max())  # borders: padding
        seen[aa] = change, inner / float(feat.abs().mean())
    # measured: logits 6.3e-5 against 1.9e-3, first-layer features 7 % against 219 % of
    # their mean (what remains comes from the activation of the smooth base, not the phase)
    assert seen[False][0] > 1e-3 and seen[True][0] < 0.1 * seen[False][0], seen
    assert seen[False][1] > 1.0 and seen[True][1] < 0.1 * seen[False][1], seen


@torch.no_grad()
def test_spectral_head_reads_a_radial_filter_as_its_squared_transfer() -> None:
    """The spectral head's input is the ring power: filtering an image with a radial transfer
    H moves each ring's log10 power by log10 |H|^2 (up to the Hann window's leakage), so a
    kernel change, a radial filter, is what it reads; the mean level (HU) is not."""
    from kernelconv.nets.discriminator import Discriminator, DiscriminatorConfig, SpectralHead
    from kernelconv.nets.spectrum import ring_centres

    head = SpectralHead(3)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(8, 1, 128, 128, generator=g, dtype=torch.float64) * 0.01
    fy = torch.fft.fftfreq(128, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(128, dtype=torch.float64)[None, :]
    r = torch.sqrt(fy ** 2 + fx ** 2)
    h = torch.exp(-((r / 0.2) ** 2))  # a soft kernel's roll-off, in cycles/pixel
    y = torch.fft.irfft2(torch.fft.rfft2(x) * h, s=(128, 128))
    change = (head.spectrum(y) - head.spectrum(x)).mean(dim=0)
    centres = ring_centres()
    expected = torch.log10(torch.exp(-((centres / 0.2) ** 2)) ** 2)
    inner = slice(1, 20)  # where the filtered power stays well above the 1e-8 floor
    assert torch.allclose(change[inner].double(), expected[inner], atol=0.15)
    assert torch.allclose(head.spectrum(x + 0.3), head.spectrum(x), atol=1e-4)
    cfg = DiscriminatorConfig(c_dim=3, conv_dim=4, n_layers=5, feature_channels=8,
                              spectral_head=True)
    assert DiscriminatorConfig.from_dict(cfg.to_dict()) == cfg
    assert "spectral_head" not in DiscriminatorConfig().to_dict()  # the paper's file shape
    disc = Discriminator(cfg)
    plain = Discriminator(DiscriminatorConfig(c_dim=3, conv_dim=4, n_layers=5,
                                              feature_channels=8))
    assert tuple(t.shape for t in disc(x[:2].float())) == \
        tuple(t.shape for t in plain(x[:2].float()))


@torch.no_grad()
def test_physical_rings_compare_pixel_sizes_at_the_same_frequency() -> None:
    """The feature matching's rings are in lp/cm: a kernel-like roll-off defined in lp/cm
    moves the same rings by the same amount at 0.5 and 0.9 mm pixels, and rings beyond an
    image's corner frequency are NaN (left out), not zero."""
    from kernelconv.nets.spectrum import LPCM_RING_WIDTH, N_LPCM_RINGS, log_ring_power

    g = torch.Generator().manual_seed(6)
    centres = (torch.arange(N_LPCM_RINGS, dtype=torch.float64) + 0.5) * LPCM_RING_WIDTH
    changes = {}
    for px in (0.5, 0.9):
        x = torch.randn(8, 1, 128, 128, generator=g, dtype=torch.float64) * 0.01
        f = torch.sqrt(torch.fft.fftfreq(128, px, dtype=torch.float64)[:, None] ** 2
                       + torch.fft.rfftfreq(128, px, dtype=torch.float64)[None, :] ** 2) * 10
        y = torch.fft.irfft2(torch.fft.rfft2(x) * torch.exp(-((f / 5.0) ** 2)), s=(128, 128))
        before, after = log_ring_power(x, [px] * 8), log_ring_power(y, [px] * 8)
        changes[px] = (after - before).mean(dim=0)
        corner = float(np.sqrt(2) * 10 / (2 * px))
        assert bool(torch.isnan(before[:, centres > corner + LPCM_RING_WIDTH]).all())
        assert not bool(torch.isnan(before[:, centres < corner - LPCM_RING_WIDTH]).any())
    expected = torch.log10(torch.exp(-((centres / 5.0) ** 2)) ** 2)
    rings = slice(2, 28)  # up to 7 lp/cm: inside both grids, above the 1e-8 floor
    for change in changes.values():
        assert torch.allclose(change[rings].double(), expected[rings], atol=0.2)


def test_a_zero_correction_skips_the_network_with_the_same_result(tmp_path: Path) -> None:
    # a filter_residual model whose correction is exactly zero (learnt windows alone, network
    # frozen) is its base filter: convert skips the network, and the result is what the
    # network's forward pass gives
    engine = TorchEngine(make_tiny_model(tmp_path / "z.safetensors", output="filter_residual",
                                         head_scale=None), "cpu")
    assert engine.correction_is_zero()
    hu, px = real_slice()
    skipped = engine.convert(hu, "B70f", "B30f", px)
    engine.correction_is_zero = lambda: False  # type: ignore[method-assign]
    np.testing.assert_allclose(engine.convert(hu, "B70f", "B30f", px), skipped, atol=1e-3)
    trained = TorchEngine(make_tiny_model(tmp_path / "t.safetensors", output="filter_residual",
                                          highpass_px=3.0, head_scale=0.003), "cpu")
    assert not trained.correction_is_zero()
