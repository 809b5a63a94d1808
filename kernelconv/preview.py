"""PNG previews: source | converted | difference, one row per series."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: the paper's lung window (Choi et al. 2023, Fig. 2)
LUNG_WINDOW = (-700.0, 1500.0)  # level, width
#: difference window: +-100 HU
DIFF_RANGE = 100.0


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU -> uint8 grey levels for a display window."""
    lo = level - width / 2.0
    g = np.clip((hu.astype(np.float32) - lo) / width, 0.0, 1.0)
    return np.rint(g * 255.0).astype(np.uint8)


def write_preview(
    rows: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, tile: int = 256
) -> None:
    """Write a montage: for each (title, source HU, converted HU) a row of three tiles."""
    from PIL import Image, ImageDraw

    level, width = LUNG_WINDOW
    header = 16
    canvas = Image.new("L", (3 * tile, len(rows) * (tile + header)), color=0)
    draw = ImageDraw.Draw(canvas)
    for r, (title, src, conv) in enumerate(rows):
        diff = conv.astype(np.float32) - src.astype(np.float32)
        tiles = [
            window(src, level, width),
            window(conv, level, width),
            window(diff, 0.0, 2 * DIFF_RANGE),
        ]
        labels = [f"source {title}", "converted (WL -700 / WW 1500)",
                  f"difference, +-{DIFF_RANGE:.0f} HU"]
        y = r * (tile + header)
        for c, (img, label) in enumerate(zip(tiles, labels, strict=True)):
            scale = tile / max(img.shape)
            size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
            canvas.paste(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR),
                         (c * tile, y + header))
            draw.text((c * tile + 3, y + 2), label, fill=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
