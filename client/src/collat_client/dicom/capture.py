"""Colour secondary captures: the phase maps and a one-page summary as pictures every PACS viewer displays.

A viewer that knows nothing of collateral maps, SEG or SR still shows an RGB secondary capture, so the
stroke team sees the result in the PACS it already reads. Each phase map is one series, one image per slice
of the perfusion grid, in radiological convention (patient's right on the image's left, anterior up:
PatientOrientation L\\P) with the colour bar, the phase, the slice and (for demo weights) "research use only"
burned in. The summary is the overview PNG under the volumes, the decisions and the quality verdicts. All
carry the source study's patient and study identity, copied from a source instance on this machine.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import numpy as np

from collat_contract.names import PHASE_NAMES

from ..imaging.overview import hot_colours, to_ras
from ..schema import Metrics

MANUFACTURER = "collat"
PHASE_SERIES_NUMBER = 9911  # + the phase's index: 9911 arterial .. 9915 delay
SUMMARY_SERIES_NUMBER = 9920
IMAGE_SIDE = 320  # the map's longer side on screen, in pixels
BAR = 64  # the colour bar's strip on the right
BANNER = 22  # text strips above and below the map
SUMMARY_LINE_CHARS = 108  # what 900 pixels hold at 14-pixel type
RESEARCH_LINE = "RESEARCH USE ONLY - phantom-trained demo weights, not for clinical decisions"
SHORT_RESEARCH_LINE = "RESEARCH USE ONLY - demo weights"
# RLE lossless: every PACS and viewer decodes it, pydicom encodes it with no extra library, and a burned-in colour
# map must not get JPEG's ringing; the maps' flat background makes it 3-6x smaller than uncompressed.
TRANSFER_SYNTAX = "1.2.840.10008.1.2.5"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font: no system fonts needed
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def _display_size(shape: tuple[int, int], spacing: tuple[float, float]) -> tuple[int, int]:
    """(width, height) on screen with square screen pixels standing for the voxels' true aspect."""
    width_mm, height_mm = shape[0] * spacing[0], shape[1] * spacing[1]
    scale = IMAGE_SIDE / max(width_mm, height_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale))


def render_phase_slice(values_xy: np.ndarray, spacing: tuple[float, float], title: str,
                       research_only: bool) -> np.ndarray:
    """(rows, cols, 3) uint8: one RAS axial slice of a map in [-1, 1], with its colour bar and labels."""
    from PIL import Image, ImageDraw

    width, height = _display_size(values_xy.shape, spacing)
    view = np.ascontiguousarray(values_xy.T[::-1, ::-1], dtype=np.float32)  # rows anterior first, columns right first
    resized = np.asarray(Image.fromarray(view).resize((width, height), Image.BILINEAR))
    canvas = Image.new("RGB", (width + BAR, height + 2 * BANNER), (0, 0, 0))
    canvas.paste(Image.fromarray(hot_colours((resized + 1) / 2)), (0, BANNER))
    ramp = np.linspace(1, 0, height)[:, None].repeat(14, axis=1)
    canvas.paste(Image.fromarray(hot_colours(ramp)), (width + 8, BANNER))
    draw, font = ImageDraw.Draw(canvas), _font(12)
    for text, y in (("+1", BANNER), ("0", BANNER + height // 2 - 6), ("-1", BANNER + height - 13)):
        draw.text((width + 26, y), text, fill=(230, 230, 230), font=font)
    draw.text((4, 4), title, fill=(255, 255, 255), font=font)
    draw.text((4, BANNER + 4), "R", fill=(120, 200, 255), font=font)
    if research_only:
        draw.text((4, BANNER + height + 4), SHORT_RESEARCH_LINE, fill=(255, 110, 110), font=font)
    return np.asarray(canvas)


def _capture(reference, pixels: np.ndarray, series_uid: str, series_number: int, instance: int, description: str,
             research_only: bool):
    import highdicom as hd

    image = hd.sc.SCImage.from_ref_dataset(
        reference, pixels, photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
        series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=hd.UID(),
        instance_number=instance, manufacturer=MANUFACTURER, patient_orientation=("L", "P"),
        series_description=description[:64], transfer_syntax_uid=TRANSFER_SYNTAX,
        content_qualification="RESEARCH" if research_only else "PRODUCT")
    image.BurnedInAnnotation = "YES"  # the labels are pixels: a de-identifying PACS must know
    # What was imaged: the head, an unpaired part, so General Series Laterality (Type 2C, for paired parts) is
    # rightly absent; without the body part a validator cannot tell, and dciodvfy reports Laterality missing.
    image.BodyPartExamined = "HEAD"
    copy_character_set(image, reference)
    return image


def copy_character_set(dataset, reference) -> None:
    """The source's Specific Character Set on an object that copies its patient's name and study texts: without it
    a name such as Müller, read from an ISO_IR 100 or ISO_IR 192 study, would be written as undeclared bytes."""
    charset = reference.get("SpecificCharacterSet")
    if charset and "SpecificCharacterSet" not in dataset:
        dataset.SpecificCharacterSet = charset


def phase_map_captures(maps: np.ndarray, affine: np.ndarray, reference, *, research_only: bool) -> list[list]:
    """One series per phase (a list of SC datasets per phase), one image per slice of ``maps`` (x, y, z, 5)."""
    import highdicom as hd
    import nibabel as nib

    ras = to_ras(np.asarray(maps, np.float32), affine)
    ornt = nib.orientations.io_orientation(affine)
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    spacing = [0.0, 0.0, 0.0]
    for axis in range(3):  # the RAS axis each stored axis became
        spacing[int(ornt[axis, 0])] = float(zooms[axis])
    series = []
    for index, phase in enumerate(PHASE_NAMES):
        uid, name = hd.UID(), phase.replace("_", " ")
        depth = ras.shape[2]
        series.append([
            _capture(reference, render_phase_slice(ras[:, :, z, index], (spacing[0], spacing[1]),
                                                   f"{name} phase   slice {z + 1}/{depth} (inferior to superior)",
                                                   research_only),
                     uid, PHASE_SERIES_NUMBER + index, z + 1, f"collat: {name} phase collateral map (colour)",
                     research_only)
            for z in range(depth)])
    return series


def summary_lines(metrics: Metrics) -> list[tuple[str, tuple[int, int, int]]]:
    """The summary page's text, line by line with its colour: what a stroke team reads first."""
    white, red, amber = (240, 240, 240), (255, 110, 110), (255, 200, 0)
    lines = [("collat stroke triage: automated result - verify against the source images", white)]
    h, c = metrics.hypoperfusion, metrics.collateral
    if h is not None:
        if h.lesion_reported:
            lines.append((f"ADC core {h.core_ml:.1f} mL   hypoperfusion {h.hypoperfusion_ml:.1f} mL   "
                          f"mismatch {h.mismatch_ml:.1f} mL   ratio {h.mismatch_ratio:.2f}"
                          f"{'+' if h.mismatch_ratio_capped else ''}   side {h.side}", white))
        else:  # the withheld lesion is said, not shown
            lines.append((f"ADC core {h.core_ml:.1f} mL   side {h.side}", white))
            lines.append((h.lesion_withheld.text if h.lesion_withheld else "hypoperfusion not reported", red))
        if h.lesion_reported and h.lesion_rule.calibrated:
            lines.append((f"hypoperfusion volume calibrated from the network's {h.lesion_rule.network_ml:.1f} mL "
                          "(the weights' model card)", (200, 200, 200)))
        given = h.clinical
        nihss = "unknown" if given.nihss is None else given.nihss
        lines.append((f"inputs: NIHSS {nihss}, age {'unknown' if given.age is None else f'{given.age:g}'}, "
                      f"side given {given.side}, DWI b-value "
                      f"{'unknown' if given.dwi_b_value is None else f'{given.dwi_b_value:g}'}", (200, 200, 200)))
        for key, name, decision in (("defuse3", "DEFUSE 3 target mismatch", h.defuse3),
                                    ("dawn", "DAWN clinical-core mismatch", h.dawn)):
            if decision is not None:
                lines.append((f"{name}: {'ELIGIBLE' if decision.eligible else 'not eligible'}", white))
            else:
                lines.append((f"{name}: WITHHELD", red if metrics.quality.withheld(key) else amber))
    if c is not None:
        lines.append((f"{c.grade_text.replace('CPS', 'Collateral perfusion score')}, {c.contrast.kind} bolus",
                      white if c.cps_estimate is not None else amber))
    for reason in metrics.quality.decisions_withheld:
        lines.append((f"decision withheld: {reason}", red))
    for warning in metrics.warnings:
        lines.append((f"warning: {warning}", amber))
    lines.append(("models: " + ", ".join(_model_text(m) for m in metrics.models.values()), (180, 180, 180)))
    return lines


def _model_text(model) -> str:
    """Name, version and digest; an imported network (a network card) also its preset and its card's digest."""
    card = (model.model_extra or {}).get("card_sha256")
    return f"{model.name} v{model.version} {(model.sha256 or '')[:12]}" + (
        f" ({model.preset}, card {str(card)[:12]})" if card else "")


def research_only(metrics: Metrics) -> bool:
    """Demo (phantom-trained) weights served the request, or the server could not say which weights did."""
    return any(m.not_for_clinical_use is not False for m in metrics.models.values())


def render_summary(metrics: Metrics, overview_png: bytes) -> np.ndarray:
    """(rows, cols, 3) uint8: the text lines over the overview picture."""
    from PIL import Image, ImageDraw

    overview = Image.open(io.BytesIO(overview_png)).convert("RGB")
    lines = summary_lines(metrics)
    if research_only(metrics):
        lines.insert(1, (RESEARCH_LINE, (255, 110, 110)))
    # Reasons run long: wrapped, never cut (a withheld result's reason is the result).
    lines = [(piece, colour) for text, colour in lines
             for piece in textwrap.wrap(text, SUMMARY_LINE_CHARS, subsequent_indent="    ") or [""]]
    font, step = _font(14), 20
    width = max(overview.width, 900)
    canvas = Image.new("RGB", (width, 12 + step * len(lines) + overview.height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, (text, colour) in enumerate(lines):
        draw.text((10, 6 + step * row), text, fill=colour, font=font)
    canvas.paste(overview, (0, 12 + step * len(lines)))
    return np.asarray(canvas)


def summary_capture(metrics: Metrics, overview_png: bytes, reference):
    import highdicom as hd

    flagged = research_only(metrics)
    return _capture(reference, render_summary(metrics, overview_png), hd.UID(), SUMMARY_SERIES_NUMBER, 1,
                    "collat: summary (volumes, decisions, quality)", flagged)


def failure_capture(reason: str, reference, lines: Sequence[str] = ()):
    """A summary page that says a study could not be processed, and why (the DICOM node sends it on request)."""
    import highdicom as hd
    from PIL import Image, ImageDraw

    text = ["collat stroke triage: NO RESULT for this study", *lines, f"reason: {reason}"]
    canvas = Image.new("RGB", (900, 40 + 22 * len(text)), (0, 0, 0))
    draw, font = ImageDraw.Draw(canvas), _font(14)
    for row, line in enumerate(text):
        draw.text((10, 10 + 22 * row), line[:140], fill=(255, 110, 110) if row == 0 else (240, 240, 240), font=font)
    return _capture(reference, np.asarray(canvas), hd.UID(), SUMMARY_SERIES_NUMBER, 1,
                    "collat: no result (see image)", True)
