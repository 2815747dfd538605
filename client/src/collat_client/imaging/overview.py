"""One PNG a clinician can glance at: the five phases and the lesion overlays on a few axial slices.

Slices are shown in radiological convention (patient's right on the image's left, anterior
up) after reorienting to RAS from the affine, whatever the stored orientation. Drawn with
Pillow, whose built-in font needs no system fonts.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import BinaryIO

import numpy as np

from collat_contract.names import PHASE_NAMES

from ..schema import Metrics
from .volumes import MapImage, Volume

TILE = 128
SLICES = 4
MARGIN = 24
TITLE = 46
LABEL_WIDTH = 96
BAR_WIDTH = 70
CHAR_WIDTH = 6  # Pillow's built-in font, in pixels


def to_ras(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    return nib.orientations.apply_orientation(data, ornt)


def _tile(slice_xy: np.ndarray) -> np.ndarray:
    """RAS (x, y) slice -> image rows (anterior up), columns (patient right first), resized to TILE."""
    from PIL import Image

    img = slice_xy.T[::-1, ::-1]
    return np.asarray(Image.fromarray(img.astype(np.float32)).resize((TILE, TILE), Image.BILINEAR))


def _grey(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    g = np.clip((values - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=-1)


def hot_colours(values: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white ramp for values in [0, 1]."""
    v = np.clip(values, 0, 1)
    return (np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], -1) * 255
            ).astype(np.uint8)


def _slices(depth: int) -> list[int]:
    return [int(round(f * (depth - 1))) for f in np.linspace(0.3, 0.75, SLICES)]


def _rows(collateral_maps: MapImage | None, lesion: MapImage | None, core: MapImage | None,
          dwi: Volume | None, show_lesion: bool = True) -> list[tuple[str, list[np.ndarray]]]:
    rows: list[tuple[str, list[np.ndarray]]] = []
    if collateral_maps is not None:
        maps = to_ras(collateral_maps.data, collateral_maps.affine)
        zs = _slices(maps.shape[2])
        for i, name in enumerate(PHASE_NAMES):
            rows.append((name.replace("_", " "), [hot_colours((_tile(maps[:, :, z, i]) + 1) / 2) for z in zs]))
    if lesion is not None and core is not None and dwi is not None:
        image = to_ras(dwi.data, dwi.affine)
        lesion_ras = to_ras(lesion.data.astype(np.float32), dwi.affine)
        core_ras = to_ras(core.data.astype(np.float32), dwi.affine)
        zs = _slices(image.shape[2])
        hi = float(np.percentile(image, 99.5)) or 1.0
        tiles = []
        for z in zs:
            base = _grey(_tile(image[:, :, z]), 0.0, hi).astype(np.float32)
            if show_lesion:  # a mask resized for display: half-covered pixels count
                inside = _tile(lesion_ras[:, :, z]) >= 0.5
                base[inside] = 0.45 * base[inside] + 0.55 * np.array([255, 200, 0])  # hypoperfusion: amber
            base[_tile(core_ras[:, :, z]) >= 0.5] = np.array([220, 30, 30])  # core: red
            tiles.append(base.astype(np.uint8))
        rows.append(("DWI + lesion" if show_lesion else "DWI + core", tiles))
    return rows


def _title(m: Metrics) -> str:
    parts = []
    if m.hypoperfusion is not None:
        h = m.hypoperfusion
        decision = "WITHHELD (quality)" if h.defuse3 is None else "yes" if h.defuse3.eligible else "no"
        if h.lesion_reported:
            parts.append(f"{h.volumes_text}  DEFUSE3 {decision}")
        else:  # the reason goes under the images, where the lesion would have been
            status = "NOT ASSESSED" if h.lesion_withheld and h.lesion_withheld.status == "not_run" else "WITHHELD"
            parts.append(f"core {h.core_ml:.1f} mL  hypoperfusion {status}  DEFUSE3 {decision}")
    if m.collateral is not None:
        parts.append(m.collateral.grade_text)
    return " | ".join(parts)


def render_overview(path: Path | BinaryIO, metrics: Metrics, *, collateral_maps: MapImage | None = None,
                    lesion: MapImage | None = None, core: MapImage | None = None,
                    dwi: Volume | None = None) -> tuple[int, int]:
    """Write the PNG of a result's maps and masks; returns its (width, height)."""
    from PIL import Image, ImageDraw

    h = metrics.hypoperfusion
    show_lesion = h is None or h.lesion_reported  # a withheld lesion is never drawn as a finding
    rows = _rows(collateral_maps, lesion, core, dwi, show_lesion)
    width = LABEL_WIDTH + SLICES * (TILE + 4) + BAR_WIDTH + MARGIN
    legend = [] if lesion is None else ["amber: hypoperfusion lesion   red: ADC core"] if show_lesion else \
        ["red: ADC core", *textwrap.wrap(h.lesion_withheld.text if h is not None and h.lesion_withheld else
                                         "hypoperfusion not reported", (width - LABEL_WIDTH) // CHAR_WIDTH)]
    height = TITLE + len(rows) * (TILE + 4) + MARGIN + 14 * max(len(legend), 1)
    canvas = Image.new("RGB", (width, height), (16, 16, 16))
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN // 2, 6), _title(metrics), fill=(255, 255, 255))
    draw.text((MARGIN // 2, 24), "research use only - phantom-trained demo weights may be served; R = patient right",
              fill=(200, 120, 120))
    for r, (label, tiles) in enumerate(rows):
        y = TITLE + r * (TILE + 4)
        draw.text((6, y + TILE // 2 - 6), label, fill=(230, 230, 230))
        for c, tile in enumerate(tiles):
            x = LABEL_WIDTH + c * (TILE + 4)
            canvas.paste(Image.fromarray(tile), (x, y))
            draw.text((x + 3, y + 3), "R", fill=(120, 200, 255))
    if collateral_maps is not None:  # colour bar of the phase maps: -1 (no contrast) .. 1
        x0 = LABEL_WIDTH + SLICES * (TILE + 4) + 10
        bar_height = 5 * (TILE + 4) - 4
        ramp = np.linspace(1, 0, bar_height)[:, None].repeat(16, axis=1)
        canvas.paste(Image.fromarray(hot_colours(ramp)), (x0, TITLE))
        draw.text((x0 + 20, TITLE), "+1", fill=(230, 230, 230))
        draw.text((x0 + 20, TITLE + bar_height // 2 - 6), "0", fill=(230, 230, 230))
        draw.text((x0 + 20, TITLE + bar_height - 12), "-1", fill=(230, 230, 230))
    y = TITLE + len(rows) * (TILE + 4)
    for i, line in enumerate(legend):  # a withheld lesion: its reason in red where the legend would be
        draw.text((LABEL_WIDTH, y + 2 + 14 * i), line, fill=(230, 230, 230) if show_lesion else (255, 110, 110))
    canvas.save(path, format="PNG")
    return width, height
