"""The oracle texture bound of benchmarks/texture_eval.py draws noise with the NPS it is given."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from texture_eval import MissingNoise  # noqa: E402

from kernelconv.evaluation.evaluate import radial_nps  # noqa: E402


class _Flat:
    def convert(self, hu: np.ndarray, source: str, target: str, pixel_mm: float) -> np.ndarray:
        return np.asarray(hu, dtype=np.float32)


def test_missing_noise_has_the_requested_nps_inside_the_body_only() -> None:
    px = 0.7
    freq = np.arange(0.0, 5.0 / px, 0.1)
    wanted = 400.0 * np.exp(-(((freq - 4.0) / 1.5) ** 2))  # a band-pass NPS, HU^2 mm^2
    engine = MissingNoise(_Flat(), {"B30f -> B70f": (freq, wanted)}, seed=3)
    image = np.full((4, 256, 256), 40.0, dtype=np.float32)
    image[:, :, :32] = -1024.0  # air: left untouched
    out = engine.convert(image, "B30f", "B70f", px)
    assert np.all(out[:, :, :24] == -1024.0)
    body = np.zeros((256, 256), bool)
    body[:, 48:] = True
    got = np.nanmean([radial_nps(sl - 40.0, body, px, freq) for sl in out], axis=0)
    band = (freq > 2.5) & (freq < 5.5)
    assert np.allclose(got[band], wanted[band], rtol=0.25)
    assert got[freq < 1.0].max() < 0.05 * wanted.max()


def test_edge_margin_keeps_an_edge_error_out_of_the_noise() -> None:
    """--edge-margin-mm: an error confined to the soft tissue's boundary (an over-sharpened
    edge) counts as noise over the whole region and not once the region keeps 3 mm from it."""
    from scipy import ndimage
    from texture_eval import SOFT_TO_SHARP, measure

    px = 0.7
    yy, xx = np.mgrid[:128, :128]
    disc = np.hypot(yy - 64, xx - 64) < 45
    truth = np.where(disc, 40.0, -1000.0)[None]
    rng = np.random.default_rng(0)
    ref = truth + rng.normal(0, 10, truth.shape)
    scan = {k: (ref.astype(np.float32), px) for k in ("B30f", "B50f", "B70f")}
    rim = disc & ~ndimage.binary_erosion(disc, iterations=6)  # 4.2 mm at the edge

    class _Rim:
        def convert(self, hu: np.ndarray, source: str, target: str, pixel_mm: float) -> np.ndarray:
            return np.asarray(hu + 60.0 * rim, dtype=np.float32)

    lung = np.zeros_like(disc)[None]
    whole = measure(_Rim(), [(scan, truth, lung)])
    inside = measure(_Rim(), [(scan, truth, lung)], margin_mm=3.0)
    name = "{} -> {}".format(*SOFT_TO_SHARP[0])
    assert whole[name]["noise ratio"] > 1.5
    assert abs(inside[name]["noise ratio"] - 1.0) < 1e-6
