"""PNG previews of a conversion, one labelled row per series: the whole middle slice (source,
converted, difference) and zooms of a lung region and a soft-tissue region chosen from the
image, shown at twice their full resolution, so that a change of kernel (edge sharpness, noise
grain) can be judged; a whole 512-pixel slice shrunk to a tile hides it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: the paper's lung window (Choi et al. 2023, Fig. 2)
LUNG_WINDOW = (-700.0, 1500.0)  # level, width
#: a soft-tissue (mediastinal) window
SOFT_WINDOW = (40.0, 400.0)
#: difference window: +-100 HU
DIFF_RANGE = 100.0
#: HU ranges that make a region lung (aerated parenchyma with vessels) or soft tissue
LUNG_HU = (-950.0, -500.0)
SOFT_HU = (-120.0, 150.0)
#: side of a zoomed region in source pixels, and its magnification (nearest neighbour, so
#: every pixel stays visible)
CROP = 128
ZOOM = 2
#: side of a tile in the montage, and the height of the title and caption bands
TILE = CROP * ZOOM
TITLE_H = 22
CAPTION_H = 18
GAP = 6
#: outline colours of the lung and soft-tissue regions on the whole slices
LUNG_COLOUR = (255, 200, 0)
SOFT_COLOUR = (0, 200, 255)


@dataclass(frozen=True)
class PreviewRow:
    """One series: its label (folder and series number), the kernels, and the middle slice
    before and after (HU)."""

    label: str
    source_kernel: str
    target_kernel: str
    source: np.ndarray
    converted: np.ndarray


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU -> uint8 grey levels for a display window."""
    lo = level - width / 2.0
    g = np.clip((hu.astype(np.float32) - lo) / width, 0.0, 1.0)
    return np.rint(g * 255.0).astype(np.uint8)


def outside_body(image: np.ndarray, step: int = 4) -> np.ndarray:
    """Air connected to the image's border (HU < -500, on a grid ``step`` times coarser): what
    surrounds the body, unlike the lungs inside it."""
    air = image[::step, ::step] < -500
    out = np.zeros_like(air)
    out[0, :], out[-1, :], out[:, 0], out[:, -1] = air[0, :], air[-1, :], air[:, 0], air[:, -1]
    while True:
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        grown &= air
        if (grown == out).all():
            break
        out = grown
    full = np.repeat(np.repeat(out, step, 0), step, 1)
    return full[:image.shape[0], :image.shape[1]]


def best_region(image: np.ndarray, lo: float, hi: float, size: int,
                exclude: tuple[int, int, int] | None = None) -> tuple[int, int, int] | None:
    """The top-left corner and side ``(y, x, side)`` of the square of side ``size`` (at most
    the image) holding the most pixels inside the body with ``lo <= HU <= hi``, nearest the
    centre among equals and not overlapping ``exclude`` by more than a quarter; None when no
    square holds any."""
    h, w = image.shape
    side = min(size, h, w)
    mask = ((image >= lo) & (image <= hi) & ~outside_body(image)).astype(np.int64)
    integral = np.zeros((h + 1, w + 1), np.int64)
    integral[1:, 1:] = mask.cumsum(0).cumsum(1)
    counts = (integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side]
              + integral[:-side, :-side])  # (h - side + 1, w - side + 1)
    ys, xs = np.mgrid[0:counts.shape[0], 0:counts.shape[1]]
    if exclude is not None:
        ey, ex, es = exclude
        overlap = (np.clip(np.minimum(ys + side, ey + es) - np.maximum(ys, ey), 0, None)
                   * np.clip(np.minimum(xs + side, ex + es) - np.maximum(xs, ex), 0, None))
        counts = np.where(overlap > side * side // 4, -1, counts)
    if counts.max() <= 0:
        return None
    centre = (ys + side / 2 - h / 2) ** 2 + (xs + side / 2 - w / 2) ** 2
    best = np.flatnonzero(counts == counts.max())
    pick = best[np.argmin(centre.ravel()[best])]
    y, x = np.unravel_index(pick, counts.shape)
    return int(y), int(x), side


def _wl(level_width: tuple[float, float]) -> str:
    return f"WL {level_width[0]:.0f} / WW {level_width[1]:.0f}"


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _fit(grey: np.ndarray) -> Any:
    """A whole slice scaled (bilinear) to fit a TILE x TILE square."""
    from PIL import Image

    scale = TILE / max(grey.shape)
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR).convert("RGB")


def _zoom(grey: np.ndarray, region: tuple[int, int, int]) -> tuple[Any, int]:
    """A region magnified to the tile (ZOOM x for a full-size region) by repeating pixels, so
    that none is smoothed; and the magnification."""
    from PIL import Image

    y, x, side = region
    scale = max(1, TILE // side)
    crop = np.kron(grey[y:y + side, x:x + side], np.ones((scale, scale), np.uint8))
    return Image.fromarray(crop).convert("RGB"), scale


def _row_tiles(row: PreviewRow) -> list[tuple[Any, str]]:
    """The tiles of one row with their captions; the zoomed regions outlined on the slices."""
    from PIL import ImageDraw

    src = row.source.astype(np.float32)
    conv = row.converted.astype(np.float32)
    lung = best_region(src, *LUNG_HU, CROP)
    soft = best_region(src, *SOFT_HU, CROP, exclude=lung)
    wholes = [(_fit(window(src, *LUNG_WINDOW)), f"source {row.source_kernel}"),
              (_fit(window(conv, *LUNG_WINDOW)), f"converted {row.target_kernel}"),
              (_fit(window(conv - src, 0.0, 2 * DIFF_RANGE)),
               f"converted - source, +-{DIFF_RANGE:.0f} HU")]
    scale = TILE / max(src.shape)
    for img, _ in wholes[:2]:
        draw = ImageDraw.Draw(img)
        for region, colour in ((lung, LUNG_COLOUR), (soft, SOFT_COLOUR)):
            if region is not None:
                y, x, side = region
                draw.rectangle([x * scale, y * scale, (x + side) * scale - 1,
                                (y + side) * scale - 1], outline=colour, width=2)
    tiles = list(wholes)
    for region, (level, width), what in ((lung, LUNG_WINDOW, "lung"),
                                         (soft, SOFT_WINDOW, "soft tissue")):
        if region is None:
            continue
        for image, kernel in ((src, row.source_kernel), (conv, row.target_kernel)):
            tile, scale = _zoom(window(image, level, width), region)
            tiles.append((tile, f"{what} {kernel}, x{scale}"))
    return tiles


def write_preview(rows: Sequence[PreviewRow], path: Path) -> None:
    """Write the montage: per series a title (label, kernels) and a row of tiles: source,
    converted (lung window WL -700 / WW 1500, with the zoomed regions outlined), difference
    (+-100 HU), then the lung region (same window) and the soft-tissue region (WL 40 / WW 400),
    source beside converted, each pixel shown as ZOOM x ZOOM."""
    from PIL import Image, ImageDraw

    laid = [(row, _row_tiles(row)) for row in rows]
    columns = max((len(tiles) for _, tiles in laid), default=1)
    row_h = TITLE_H + TILE + CAPTION_H + GAP
    canvas = Image.new("RGB", (columns * (TILE + GAP) - GAP, len(laid) * row_h), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    title_font, caption_font = _font(15), _font(12)
    for r, (row, tiles) in enumerate(laid):
        top = r * row_h
        draw.text((4, top + 3), f"{row.label}: {row.source_kernel} -> {row.target_kernel}, "
                  f"middle slice (lung window {_wl(LUNG_WINDOW)}; soft tissue {_wl(SOFT_WINDOW)})",
                  fill=(255, 255, 255), font=title_font)
        for c, (img, caption) in enumerate(tiles):
            left = c * (TILE + GAP)
            canvas.paste(img, (left, top + TITLE_H))
            colour = (LUNG_COLOUR if caption.startswith("lung") else
                      SOFT_COLOUR if caption.startswith("soft") else (220, 220, 220))
            draw.text((left + 2, top + TITLE_H + TILE + 2), caption, fill=colour,
                      font=caption_font)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
