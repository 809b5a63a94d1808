"""Conversion metrics: the paper's PSNR/SSIM setting and known-answer cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernelconv.evaluation.metrics import laa950, mae, psnr, rmse, ssim


def test_identical_images_give_infinite_psnr_and_ssim_one() -> None:
    img = np.random.default_rng(0).normal(0, 200, (64, 64))
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0)
    assert rmse(img, img) == 0.0 and mae(img, img) == 0.0


def test_known_gaussian_noise_gives_expected_figures() -> None:
    rng = np.random.default_rng(1)
    ref = np.zeros((512, 512))
    pred = ref + rng.normal(0, 41.0, ref.shape)  # ~41 HU RMSE is ~40 dB over 4095 HU
    assert rmse(pred, ref) == pytest.approx(41.0, rel=0.01)
    assert mae(pred, ref) == pytest.approx(41.0 * math.sqrt(2 / math.pi), rel=0.01)
    assert psnr(pred, ref) == pytest.approx(20 * math.log10(4095 / 41.0), abs=0.1)
    assert psnr(pred, ref) == pytest.approx(40.0, abs=0.1)


def test_values_outside_the_hu_window_are_clipped() -> None:
    ref = np.full((8, 8), -1024.0)
    pred = np.full((8, 8), -3000.0)  # padding-like values: identical after clipping
    assert psnr(pred, ref) == math.inf


def test_laa950() -> None:
    hu = np.array([[-1000, -960, -900, 40]], dtype=float)
    lung = np.array([[True, True, True, False]])
    assert laa950(hu, lung) == pytest.approx(200 / 3)
    assert math.isnan(laa950(hu, np.zeros_like(lung)))
