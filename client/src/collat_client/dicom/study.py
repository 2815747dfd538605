"""A study folder -> which series is the perfusion, the DWI and the ADC, and why every other one was left out.

The rules, from the headers (and the b-values dcm2niix read):

* **ADC**: the image type says ADC (every vendor writes it), or the description does.
* **DWI**: a diffusion series: b-values above :data:`~.diffusion.B0_MAX` (dcm2niix's .bval, the
  standard tag or a vendor's private tag), or an image type of DIFFUSION/TRACEW. A series of
  several b-values and directions gives its trace (and, with a b=0 volume, an ADC).
* **perfusion**: any other time series (four dimensions) of at least the minimum frames and
  slices; whether it carries a contrast bolus is the server's check, which reads the signal.
* **other**: single 3D images that are not diffusion (a T1, a FLAIR, a localizer), and non-image
  objects (structured reports, presentation states, documents), ignored with their class named.

The choice: one perfusion candidate, or the one the user named. Diffusion series on one grid are
one acquisition: its scanner trace is taken when there is one at the highest b-value, else the
trace is computed; its scanner ADC when there is one, else the ADC is computed from b=0. Series
on different grids, or several perfusion candidates, are ambiguous: refused with the candidates
listed, and settled by naming a series (number or SeriesInstanceUID). A DWI whose highest
b-value is not within the range the U-Net was trained on is refused unless the caller allows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collat_contract.limits import MIN_PERFUSION_SLICES
from collat_contract.tensors import MIN_PERFUSION_FRAMES

from ..errors import InputFileError, InvalidInput
from ..imaging.diffusion import B0_MAX, check_b_value, combine
from .convert import ConvertedImage, convert_files, convert_folder
from .headers import SeriesHeader, scan_headers
from .verify import check_conversion

_ADC_WORDS = re.compile(r"\b(ADC|apparent diffusion)", re.IGNORECASE)


@dataclass(frozen=True)
class Chosen:
    """An image the study gives to the pipeline, ready to be checked as a volume."""

    label: str
    data: np.ndarray
    affine: np.ndarray
    frame_seconds: float | None = None
    b_value: float | None = None
    files: tuple[Path, ...] = ()  # the series' instances: DICOM outputs reference them and carry their identity


@dataclass(frozen=True)
class SeriesEntry:
    """One row of the study's table."""

    label: str
    number: int | None
    uid: str
    shape: tuple[int, ...]
    role: str  # perfusion, dwi, adc, other, not an image
    outcome: str  # "chosen as ..." or "left out"
    reason: str


@dataclass
class Study:
    folder: Path
    entries: list[SeriesEntry] = field(default_factory=list)
    perfusion: Chosen | None = None
    dwi: Chosen | None = None
    adc: Chosen | None = None

    def table(self) -> list[dict[str, object]]:
        return [{"series": e.label, "number": e.number, "shape": "x".join(map(str, e.shape)) or "-", "role": e.role,
                 "outcome": e.outcome, "reason": e.reason} for e in self.entries]


@dataclass
class _Candidate:
    image: ConvertedImage
    header: SeriesHeader | None
    role: str
    reason: str
    label: str
    outcome: str = "left out"
    why: str = ""

    @property
    def b_values(self) -> tuple[float, ...]:
        if self.image.b_values:
            return self.image.b_values
        return tuple(sorted(self.header.b_values)) if self.header and self.header.b_values else ()


def _label(image: ConvertedImage, header: SeriesHeader | None) -> str:
    known = header.number if header is not None else image.number  # dcm2niix hashes a missing number
    number = "?" if known is None else str(known)
    description = image.description or (header.description if header else "")
    name = f"series {number}" + (f" '{description}'" if description else "")
    return name + (f" [{image.suffix}]" if image.suffix else "")


def classify(image: ConvertedImage, header: SeriesHeader | None) -> tuple[str, str]:
    """(role, reason) of one converted image, by the rules of the module's docstring."""
    types = set(image.image_type)
    b = image.b_values or (tuple(header.b_values) if header else ())
    if "ADC" in types or _ADC_WORDS.search(image.description):
        return "adc", "image type ADC" if "ADC" in types else "described as ADC"
    if b and max(b) > B0_MAX:
        return "dwi", f"diffusion-weighted, b-values {', '.join(f'{v:g}' for v in sorted({round(v) for v in b}))}"
    if types & {"DIFFUSION", "TRACEW", "TRACE"}:
        return "dwi", f"image type {'/'.join(sorted(types & {'DIFFUSION', 'TRACEW', 'TRACE'}))}, b-value unknown"
    if image.data.ndim == 4:
        return "perfusion", f"time series of {image.volumes} frames"
    return "other", "a single 3D image, not diffusion: anatomy (T1, T2, FLAIR) or a localizer"


def _same_grid(a: ConvertedImage, b: ConvertedImage) -> bool:
    return a.data.shape[:3] == b.data.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-3)


def _named(candidates: list[_Candidate], name: str | None, what: str, folder: Path) -> list[_Candidate]:
    """The candidates the user's series name (number or SeriesInstanceUID) picks, else all of them."""
    if name is None:
        return candidates
    picked = [c for c in candidates if c.image.series_uid == name or str(c.image.number) == str(name)]
    if not picked:
        offered = ", ".join(c.label for c in candidates) or "none"
        raise InvalidInput(f"{folder}: no {what} series {name} (candidates: {offered})")
    return picked


def _ambiguous(folder: Path, what: str, flag: str, candidates: list[_Candidate]) -> InvalidInput:
    listed = "; ".join(f"{c.label} {'x'.join(map(str, c.image.data.shape))} uid {c.image.series_uid}"
                       for c in candidates)
    return InvalidInput(f"{folder}: {len(candidates)} {what} candidates, choose one with {flag}: {listed}")


NO_SERIES = "none"  # --perfusion-series none: run the study's diffusion series alone


def _choose_perfusion(study: Study, candidates: list[_Candidate], name: str | None) -> None:
    if name is not None and name.lower() == NO_SERIES:  # the user's word: a series we cannot judge without a server
        for c in candidates:
            c.why = "--perfusion-series none: not run"
        return
    usable = []
    for c in candidates:
        frames, slices = c.image.volumes, min(c.image.data.shape[:3])
        if frames < MIN_PERFUSION_FRAMES:
            c.why = f"{frames} frames: too few for perfusion (at least {MIN_PERFUSION_FRAMES})"
        elif slices < MIN_PERFUSION_SLICES:
            c.why = f"{slices} slices: too few to cover the territory (at least {MIN_PERFUSION_SLICES})"
        elif c.image.repetition_seconds is None:
            c.why = "no repetition time: the frame interval is unknown"
        else:
            usable.append(c)
    usable = _named(usable, name, "perfusion", study.folder)
    if len(usable) > 1:
        raise _ambiguous(study.folder, "perfusion", "--perfusion-series", usable)
    if usable:
        c = usable[0]
        c.outcome, c.why = "chosen as perfusion", f"{c.image.volumes} frames every {c.image.repetition_seconds:g} s"
        study.perfusion = Chosen(c.label, c.image.data, c.image.affine, c.image.repetition_seconds,
                                 files=tuple(c.header.files) if c.header else ())


def _choose_adc(study: Study, candidates: list[_Candidate], name: str | None, why: str) -> bool:
    """The one ADC among ``candidates`` (or the one named), if any; several are ambiguous."""
    candidates = _named(candidates, name, "ADC", study.folder)
    if len(candidates) > 1:
        raise _ambiguous(study.folder, "ADC", "--adc-series", candidates)
    if not candidates:
        return False
    c = candidates[0]
    c.outcome, c.why = "chosen as ADC", why
    study.adc = Chosen(c.label, c.image.data, c.image.affine)
    return True


def _choose_diffusion(study: Study, dwis: list[_Candidate], adcs: list[_Candidate], dwi_name: str | None,
                      adc_name: str | None, allow_b_value: bool) -> None:
    if not dwis:  # a folder holding only an ADC series (given with --adc): that series is the ADC
        _choose_adc(study, adcs, adc_name, "no DWI in this folder")
        return
    dwis = _named(dwis, dwi_name, "DWI", study.folder)
    grids: list[list[_Candidate]] = []
    for c in dwis:
        group = next((g for g in grids if _same_grid(g[0].image, c.image)), None)
        (group.append(c) if group is not None else grids.append([c]))
    if len(grids) > 1:
        raise _ambiguous(study.folder, "DWI", "--dwi-series", dwis)
    acquisition = grids[0]
    multi = [c for c in acquisition if c.image.data.ndim == 4 and c.b_values and len(c.b_values) == c.image.volumes]
    top = max((max(c.b_values) for c in acquisition if c.b_values), default=None)
    traces = [c for c in acquisition if c.image.data.ndim == 3 and (not c.b_values or top is None
                                                                    or abs(max(c.b_values) - top) <= 0.05 * top)]
    if len(traces) > 1 and dwi_name is None:
        raise _ambiguous(study.folder, "DWI", "--dwi-series", traces)
    scanner_adc = [c for c in adcs if _same_grid(c.image, acquisition[0].image)]
    # the trace and ADC of a multi-b series, computed only when the scanner's trace or ADC is missing
    computed = combine(multi[0].image.data, multi[0].b_values) if multi and not (traces and scanner_adc) else None
    if traces:
        chosen = traces[0]
        b_value = max(chosen.b_values) if chosen.b_values else top
        trace_data, how = chosen.image.data, "the scanner's trace image"
    elif computed is not None:
        chosen = multi[0]
        b_value, trace_data = computed.b_value, computed.trace
        how = f"trace computed: geometric mean of {computed.directions} directions at b={computed.b_value:g}"
    else:
        for c in acquisition:
            c.why = "a diffusion series with neither a trace nor a b-value per volume"
        raise InvalidInput(f"{study.folder}: {acquisition[0].label}: cannot build a DWI trace from it")
    check_b_value(b_value, f"{study.folder}: {chosen.label}", allow_b_value)
    chosen.outcome, chosen.why = "chosen as DWI", how + ("" if b_value is None else f", b={b_value:g} s/mm^2")
    for c in acquisition:
        if c is not chosen:
            c.why = f"same acquisition as {chosen.label}"
    study.dwi = Chosen(chosen.label, trace_data, chosen.image.affine, b_value=b_value,
                       files=tuple(chosen.header.files) if chosen.header else ())

    for c in adcs:
        if c not in scanner_adc:
            c.why = f"not on the grid of the DWI ({chosen.label})"
    if _choose_adc(study, scanner_adc, adc_name, "the scanner's ADC on the DWI's grid"):
        return
    if computed is not None and computed.adc is not None:
        source = multi[0]
        how_adc = f"its b=0 and b={computed.b_value:g} volumes gave the ADC: -ln(S_b/S_0)/b, mm^2/s"
        source.why = f"{source.why}; {how_adc}" if source is chosen else how_adc
        study.adc = Chosen(f"ADC computed from {source.label}", computed.adc, source.image.affine)
    else:  # the ADC may come from elsewhere (--adc); the request says so if it does not
        chosen.why += "; no ADC on its grid and no b=0 volume to compute one"


def _verified(image: ConvertedImage, header: SeriesHeader) -> tuple[ConvertedImage | None, str, str]:
    """(the image to use or None, why it cannot be used, a note on what was put right): the headers' slice
    positions, then the decoded slices (:mod:`.verify`); a conversion that fails is converted again on its own
    before it is given up."""
    gap = header.slice_gap()
    if gap:
        return None, gap, ""
    philips = "PHILIPS" in header.manufacturer.upper()
    checked, note = check_conversion(image, header.files, philips)
    if checked is not None:
        return checked, "", note
    alone = [i for i in convert_files(header.files) if i.suffix == image.suffix]
    again, again_note = check_conversion(alone[0], header.files, philips) if alone else (None, note)
    if again is None:
        return None, note, ""
    return again, "", "; ".join(filter(None, ["converted again on its own: in its folder tree the converter "
                                               "misread it", again_note]))


def read_study(folder: Path | str, *, perfusion_series: str | None = None, dwi_series: str | None = None,
               adc_series: str | None = None, allow_b_value: bool = False, given_as: str | None = None) -> Study:
    """Walk ``folder`` (any depth), convert its image series and choose the pipeline's inputs.

    ``given_as`` ("dwi" or "adc"): the caller says the folder holds that image (``--dwi DIR``), so a 3D series whose
    headers carry no diffusion tags (some exporters drop them) is taken as one rather than as anatomy."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such directory")
    headers = scan_headers(folder)
    if not headers:
        raise InputFileError(f"{folder}: no DICOM files in this folder or below it")
    study = Study(folder)
    images = convert_folder(folder) if any(h.image for h in headers.values()) else []
    candidates = []
    for image in sorted(images, key=lambda i: (i.number is None, i.number or 0, i.series_uid, i.suffix)):
        header = headers.get(image.series_uid)
        checked, problem, note = _verified(image, header) if header else (image, "", "")
        if checked is None:
            study.entries.append(SeriesEntry(_label(image, header), header.number if header else image.number,
                                             image.series_uid, tuple(image.data.shape), "unreadable", "left out",
                                             problem))
            continue
        image = checked
        role, reason = classify(image, header)
        candidates.append(_Candidate(image, header, role, reason + (f" ({note})" if note else ""),
                                     _label(image, header)))
    if given_as in ("dwi", "adc") and not any(c.role == given_as for c in candidates):
        for c in candidates:
            if c.role == "other":
                c.role, c.reason = given_as, f"a 3D image given as the {given_as.upper()} (its headers do not say)"
    by_role = {role: [c for c in candidates if c.role == role] for role in ("perfusion", "dwi", "adc", "other")}
    _choose_perfusion(study, by_role["perfusion"], perfusion_series)
    _choose_diffusion(study, by_role["dwi"], by_role["adc"], dwi_series, adc_series, allow_b_value)
    for c in by_role["other"]:
        c.why = c.reason
    for c in candidates:
        reason = c.reason if c.outcome == "left out" and c.why == c.reason else f"{c.reason}; {c.why}"
        study.entries.append(SeriesEntry(c.label, c.header.number if c.header else c.image.number,
                                         c.image.series_uid, tuple(c.image.data.shape), c.role, c.outcome, reason))
    converted = {image.series_uid for image in images}
    for header in headers.values():
        if not header.image:
            study.entries.append(SeriesEntry(header.label, header.number, header.uid, (), "not an image", "ignored",
                                             f"{len(header.files)} {header.kind} object(s)"))
        elif header.uid not in converted:
            study.entries.append(SeriesEntry(header.label, header.number, header.uid, (), "unreadable", "left out",
                                             "the converter made no image from it"))
    return study
