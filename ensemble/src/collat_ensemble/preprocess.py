"""From scanner images to network inputs, and from network outputs back to the scanner's grid.

Pure numpy/scipy; the Triton Python-backend models and the training code both call these,
so the server feeds the networks exactly what they were trained on.

Perfusion (3D-MROD-Net, SPEC section 2): reorient to RAS (coronal DCE-MRA becomes axial),
resample time to the network's frames and frame interval, resample space onto a grid of
the network's size covering the same field of view, build the brain mask (SPEC recipe),
turn a DSC series (its signal dips) into the DCE-like enhancement the network was trained on
(:func:`.contrast.dsc_to_enhancement`, the version its weights were trained on), scale
intensities to [0, 1] by the minimum and maximum inside the mask and map them to [-0.9, 0.9]
(the data loader's range), -0.9 outside the mask. Output ``[T, D, H, W]`` with D = inferior->superior slices,
H = posterior->anterior rows, W = left->right columns. The series' pre-bolus baseline is
registered to the MNI template, where the grade compares the hemispheres (:mod:`.territory`).

Diffusion (U-Net, SPEC section 3): the study normalized DWIs to MNI space; the product
registers native scans itself (:mod:`.registration`; an input already in MNI space is
recognised and kept). The core is measured on the scan's own grid (:mod:`.adc_core`); the
scan is resampled onto the MNI 2 mm grid 91x109x60 by its registered affine and padded to
128x128. Four channels: DWI and ADC divided by their parenchymal means, the ADC core mask
and the side mask; 16-slice slabs every ``stride`` slices (``SLAB_STRIDE`` by default; the served
stride is the deployment's ``unet_stride`` parameter). Results return to the scan's grid through
the same affine (:func:`mni_to_input_grid`), where every volume is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collat_contract.clinical import ClinicalInputError, check_nihss, check_side
from collat_contract.limits import MIN_PERFUSION_SLICES

from .adc_core import measure_core
from .contrast import DSC_CONVERSION, Bolus, baseline_frames, detect_bolus, dsc_to_enhancement
from .errors import InputValidationError
from .geometry import (
    Orientation,
    check_affine,
    fit_grid,
    reorient_from_ras,
    reorient_to_ras,
    resample,
    resample_time,
    voxel_sizes,
)
from .phases import MIN_FRAMES, bolus_arrival, brain_mask
from .registration import Registration, normalize_to_mni
from .template import Template, default_template

INPUT_LOW, INPUT_HIGH = -0.9, 0.9
# Coverage a perfusion series needs (with collat_contract.limits.MIN_PERFUSION_SLICES, which the SDK checks too).
MIN_PERFUSION_EXTENT_MM = 30.0


@dataclass(frozen=True)
class PerfusionGrid:
    """What is needed to put network outputs back on the input image's grid."""

    input_shape: tuple[int, int, int]
    orientation: Orientation
    ras_affine: np.ndarray
    ras_shape: tuple[int, int, int]
    grid_affine: np.ndarray  # RAS affine of the network grid, in (x, y, z) order
    grid_shape: tuple[int, int, int]  # (x, y, z) = (W, H, D)


@dataclass(frozen=True)
class PreparedPerfusion:
    network_input: np.ndarray  # [T, D, H, W] float32
    mask: np.ndarray  # [D, H, W] bool
    grid: PerfusionGrid
    bolus: Bolus
    registration: Registration | None  # the baseline's map to MNI space; None when it failed
    registration_problem: str  # why it failed; empty when it did not


def validate_series(series: np.ndarray, affine: np.ndarray, frame_seconds: float) -> None:
    if series.ndim != 4:
        raise InputValidationError(f"a perfusion series must be 4D (x, y, z, t), got {series.ndim}D {series.shape}")
    if series.shape[-1] < MIN_FRAMES:
        raise InputValidationError(f"too few frames: {series.shape[-1]} (at least {MIN_FRAMES} are needed)")
    if min(series.shape[:3]) < 1:
        raise InputValidationError(f"empty spatial axis in shape {series.shape}")
    if not (np.isfinite(frame_seconds) and 0.05 <= frame_seconds <= 30.0):
        raise InputValidationError(f"frame interval {frame_seconds} s is not plausible (0.05 to 30 s)")
    if not np.all(np.isfinite(series)):
        raise InputValidationError("the series contains NaN or infinite values")
    if float(series.max()) == float(series.min()):
        raise InputValidationError("the series is constant (all voxels equal): nothing to analyse")
    check_affine(affine, "perfusion affine")
    extents = [n * float(d) for n, d in zip(series.shape[:3], voxel_sizes(affine), strict=True)]
    for axis in range(3):
        if series.shape[axis] < MIN_PERFUSION_SLICES or extents[axis] < MIN_PERFUSION_EXTENT_MM:
            raise InputValidationError(
                f"too few slices to cover the territory: {series.shape[axis]} slices, {extents[axis]:.0f} mm along "
                f"axis {axis} (at least {MIN_PERFUSION_SLICES} slices and {MIN_PERFUSION_EXTENT_MM:g} mm are needed)")


def register_baseline(ras: np.ndarray, ras_affine: np.ndarray, template: Template) -> tuple[Registration | None, str]:
    """The pre-bolus mean image of a series (RAS) registered to the MNI template, or the reason it could not be:
    the maps are still delivered without it, only the grade (which compares hemispheres in template space) is not."""
    baseline = ras[..., :baseline_frames(ras.shape[-1])].mean(axis=-1)
    try:
        return normalize_to_mni(baseline, ras_affine, template, what="perfusion baseline"), ""
    except InputValidationError as exc:
        return None, str(exc)


def to_enhancement(on_grid: np.ndarray, mask: np.ndarray, bolus: Bolus, dsc_conversion: str = DSC_CONVERSION
                   ) -> np.ndarray:
    """DSC becomes the DCE-like enhancement the network reads (:func:`.contrast.dsc_to_enhancement` by version
    ``dsc_conversion``); DCE passes."""
    if bolus.kind != "DSC":
        return on_grid
    try:
        arrival: int | None = bolus_arrival(on_grid[mask].mean(axis=0))[0]
    except InputValidationError:
        arrival = None
    return dsc_to_enhancement(on_grid, arrival, mask, dsc_conversion)


def scale_to_network(on_grid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(x, y, z, t) series -> the network's ``[T, D, H, W]`` input: min-max scaled to [INPUT_LOW, INPUT_HIGH]
    inside the brain, INPUT_LOW outside. One slice at a time: reversing all four axes of the whole series at once
    walks memory with a stride of a whole slab, a slice fits in cache."""
    inside_brain = np.asarray(mask, dtype=bool)
    brain_values = on_grid[inside_brain]
    lo, hi = float(brain_values.min()), float(brain_values.max())
    network_input = np.empty(on_grid.shape[::-1], dtype=np.float32)
    for z in range(on_grid.shape[2]):
        inside = inside_brain[:, :, z]
        scaled = np.full(on_grid.shape[:2] + on_grid.shape[3:], INPUT_LOW, dtype=np.float32)
        if hi > lo:
            scaled[inside] = INPUT_LOW + (INPUT_HIGH - INPUT_LOW) * (on_grid[:, :, z][inside] - lo) / (hi - lo)
        network_input[:, z] = scaled.transpose(2, 1, 0)
    return network_input


def prepare_perfusion(series: np.ndarray, affine: np.ndarray, frame_seconds: float, *, frames: int,
                      frame_interval: float, slices: int, height: int, width: int,
                      template: Template | None = None, register: bool = True,
                      dsc_conversion: str = DSC_CONVERSION) -> PreparedPerfusion:
    """Network input of 3D-MROD-Net for one series (x, y, z, t), and the series' registration to MNI space
    (``register=False``: none, for training samples, which never grade). ``dsc_conversion``: the version the
    served weights were trained on."""
    series = np.asarray(series)
    validate_series(series, affine, frame_seconds)
    ras, ras_affine, orientation = reorient_to_ras(series.astype(np.float32, copy=False), affine)
    grid_shape = (width, height, slices)
    grid_affine = fit_grid(ras_affine, ras.shape[:3], grid_shape)
    # Space first, then time: both are linear interpolations along separate axes, so the order does not
    # change the result, and the time step then runs on the (smaller) network grid.
    # Anti-aliasing is unnecessary: the grids are of similar size and linear interpolation averages.
    in_space = resample(ras, ras_affine, grid_affine, grid_shape, order=1)
    on_grid = resample_time(in_space, frame_seconds, frames, frame_interval)
    if float(on_grid.max() - on_grid.min()) <= 1e-6 * max(abs(float(on_grid.max())), 1.0):
        raise InputValidationError("the series is constant on the network grid: nothing to analyse")
    mask = brain_mask(on_grid)
    bolus = detect_bolus(in_space, mask)  # every acquired frame, not only the network's time window
    if bolus.kind is None:
        raise InputValidationError(f"not a perfusion series: {bolus.reason}")
    on_grid = to_enhancement(on_grid, mask, bolus, dsc_conversion)
    registration, problem = register_baseline(ras, ras_affine, template or default_template()) if register else \
        (None, "not registered")
    network_input = scale_to_network(on_grid, mask)
    grid = PerfusionGrid(tuple(series.shape[:3]), orientation, ras_affine, tuple(ras.shape[:3]), grid_affine,
                         grid_shape)
    return PreparedPerfusion(network_input, np.ascontiguousarray(np.transpose(mask, (2, 1, 0))), grid, bolus,
                             registration, problem)


# Phase maps live in [-1, 1]; outside the brain they are set to the bottom of that range, the value the
# conventional method gives tissue without contrast. The network's loss ignores those voxels, so its raw
# output there is arbitrary: the served maps and the held-out evaluation both apply this rule.
OUTSIDE_BRAIN = -1.0


def mask_phase_maps(maps: np.ndarray, mask: np.ndarray, channel_axis: int = 0) -> np.ndarray:
    """Phase maps with every voxel outside ``mask`` set to ``OUTSIDE_BRAIN``; ``mask`` has the maps' shape
    without the channel axis."""
    inside = np.expand_dims(np.asarray(mask, dtype=bool), channel_axis)
    return np.where(inside, maps, np.float32(OUTSIDE_BRAIN)).astype(np.float32)


def maps_to_grid(maps: np.ndarray, grid: PerfusionGrid, order: int = 1) -> np.ndarray:
    """Network output ``[C, D, H, W]`` -> (x, y, z, C) on the original input grid and orientation."""
    xyz = np.transpose(np.asarray(maps, dtype=np.float32), (3, 2, 1, 0))
    ras = resample(xyz, grid.grid_affine, grid.ras_affine, grid.ras_shape, order=order, cval=float(xyz.min()))
    return reorient_from_ras(ras, grid.orientation)


def volume_to_network_grid(volume: np.ndarray, affine: np.ndarray, grid: PerfusionGrid, order: int = 1) -> np.ndarray:
    """A map on the input grid (x, y, z[, C]) -> ``[C, D, H, W]`` (or ``[D, H, W]``) on the network grid."""
    ras, ras_affine, _ = reorient_to_ras(np.asarray(volume, dtype=np.float32), affine)
    on_grid = resample(ras, ras_affine, grid.grid_affine, grid.grid_shape, order=order)
    axes = (3, 2, 1, 0) if on_grid.ndim == 4 else (2, 1, 0)
    return np.ascontiguousarray(np.transpose(on_grid, axes))


# ---------------------------------------------------------------- diffusion

MNI_2MM_AFFINE = np.array([[2.0, 0, 0, -90.0], [0, 2.0, 0, -126.0], [0, 0, 2.0, -44.0], [0, 0, 0, 1.0]])
MNI_2MM_SHAPE = (91, 109, 60)
PADDED_INPLANE = (128, 128)
SLAB, SLAB_STRIDE = 16, 4
NIHSS_SCALE = 21.0


@dataclass(frozen=True)
class NativeGrid:
    """The scan's own grid, reoriented to RAS, and where its voxels lie in MNI space: all that is needed to bring
    a result on the MNI grid back onto the scan's voxels."""

    input_shape: tuple[int, int, int]
    orientation: Orientation
    ras_affine: np.ndarray  # RAS voxel -> the scan's mm
    native_to_mni: np.ndarray  # the scan's mm -> MNI mm (identity for an input already in MNI space)

    @property
    def ras_shape(self) -> tuple[int, int, int]:
        return tuple(int(self.input_shape[a]) for a in self.orientation.axes)  # type: ignore[return-value]

    @property
    def mni_affine(self) -> np.ndarray:
        """RAS voxel -> MNI mm."""
        return self.native_to_mni @ self.ras_affine

    @property
    def voxel_ml(self) -> float:
        return abs(float(np.linalg.det(self.ras_affine[:3, :3]))) / 1000.0


@dataclass(frozen=True)
class PreparedDiffusion:
    volume: np.ndarray  # [4, 60, 128, 128] float32: the four channels, (z, y, x), padded in-plane
    nihss_scaled: float  # NIHSS / 21
    brain: np.ndarray  # RAS grid of the scan, bool: the registered atlas brain where the DWI has signal
    core: np.ndarray  # RAS grid of the scan, bool: the ADC core (adc_core.measure_core)
    core_removed_ml: dict[str, float]  # what each artefact rule took away from the bare threshold
    adc_units: str  # "mm2/s", "1e-3 mm2/s" or "1e-6 mm2/s": what the input was taken to be
    side: str  # left, right, bilateral, or unknown: none given and no core to infer it from (nothing to run on)
    side_inferred: bool
    grid: NativeGrid
    registration: Registration
    stride: int = 4  # slices between the U-Net's windows (SLAB_STRIDE; a deployment may choose 8)

    @property
    def slabs(self) -> np.ndarray:
        """[S, 4, 16, 128, 128]: the sliding 16-slice windows the U-Net sees."""
        return to_slabs(self.volume, self.stride)

    @property
    def nihss(self) -> np.ndarray:
        """[S, 1]: the clinical input, one row per slab."""
        return np.full((len(slab_starts(stride=self.stride)), 1), self.nihss_scaled, dtype=np.float32)


def check_stride(stride: int) -> int:
    """A window stride of 1-16 slices: every slice is then covered by at least one 16-slice window."""
    if not 1 <= int(stride) <= SLAB:
        raise ValueError(f"the U-Net's window stride must be 1-{SLAB} slices, got {stride}")
    return int(stride)


def to_slabs(volume: np.ndarray, stride: int = SLAB_STRIDE) -> np.ndarray:
    """(C, Z, H, W) -> [S, C, 16, H, W] FP32, written once into its final buffer (50 MB for the MNI grid)."""
    starts = slab_starts(volume.shape[1], stride)
    slabs = np.empty((len(starts), volume.shape[0], SLAB) + volume.shape[2:], dtype=np.float32)
    for i, s in enumerate(starts):
        slabs[i] = volume[:, s: s + SLAB]
    return slabs


def detect_adc_scale(adc: np.ndarray, brain: np.ndarray) -> tuple[float, str]:
    """Scanners and pipelines write ADC in mm^2/s (tissue ~0.8e-3), in 1e-3 mm^2/s = um^2/ms (tissue ~0.8; BIDS
    and ISLES) or in 1e-6 mm^2/s (tissue ~800, most DICOM): the brain's median tells them apart, with a decade
    between each range."""
    median = float(np.median(adc[brain])) if brain.any() else 0.0
    if 1e-4 <= median <= 5e-3:
        return 1.0, "mm2/s"
    if 0.1 <= median <= 5.0:
        return 1e-3, "1e-3 mm2/s"
    if 100.0 <= median <= 5000.0:
        return 1e-6, "1e-6 mm2/s"
    raise InputValidationError(f"ADC values (median {median:.3g} in the brain) are not in mm^2/s, 1e-3 mm^2/s or "
                               "1e-6 mm^2/s")


def hemisphere(shape: tuple[int, ...], affine: np.ndarray, side: str) -> np.ndarray:
    """Voxels of one hemisphere of a grid in MNI space: world x < 0 is the patient's left (x = 0, the midline,
    counts as right)."""
    if side not in ("left", "right"):
        raise InputValidationError(f"a hemisphere is left or right, got {side!r}")
    index = np.indices(tuple(shape[:3]), dtype=np.float64)
    x_world = np.tensordot(np.asarray(affine, dtype=np.float64)[0, :3], index, axes=1) + float(affine[0, 3])
    return (x_world < 0) if side == "left" else (x_world >= 0)


def infer_side(core: np.ndarray, affine: np.ndarray) -> str:
    """The hemisphere holding more ADC core; bilateral when neither holds 2/3 of it; unknown when there is none (no
    side is guessed from nothing: the U-Net is then not run)."""
    left = int(np.count_nonzero(core & hemisphere(core.shape, affine, "left")))
    right = int(np.count_nonzero(core & hemisphere(core.shape, affine, "right")))
    total = left + right
    if total == 0:
        return "unknown"
    if left >= 2 * total / 3:
        return "left"
    if right >= 2 * total / 3:
        return "right"
    return "bilateral"


def pad_inplane(vol: np.ndarray) -> np.ndarray:
    """(x, y, z) 91x109 -> 128x128 centred, zero padding."""
    px, py = PADDED_INPLANE[0] - vol.shape[0], PADDED_INPLANE[1] - vol.shape[1]
    return np.pad(vol, ((px // 2, px - px // 2), (py // 2, py - py // 2), (0, 0)))


def _unpad_inplane(vol: np.ndarray) -> np.ndarray:
    px, py = PADDED_INPLANE[0] - MNI_2MM_SHAPE[0], PADDED_INPLANE[1] - MNI_2MM_SHAPE[1]
    return vol[px // 2: px // 2 + MNI_2MM_SHAPE[0], py // 2: py // 2 + MNI_2MM_SHAPE[1]]


def slab_starts(slices: int = MNI_2MM_SHAPE[2], stride: int = SLAB_STRIDE) -> list[int]:
    """First slice of each 16-slice window: every ``stride`` slices, and one flush with the top."""
    starts = list(range(0, slices - SLAB + 1, stride))
    if starts[-1] != slices - SLAB:
        starts.append(slices - SLAB)
    return starts


def _signal_mask(dwi: np.ndarray) -> np.ndarray:
    """Voxels where the DWI has signal: above a tenth of its 99th percentile of positive values."""
    positive = dwi[dwi > 0]
    if positive.size == 0:
        raise InputValidationError("the DWI is empty (no positive signal)")
    return dwi > 0.1 * float(np.percentile(positive, 99))


def atlas_brain(grid: NativeGrid, template: Template) -> np.ndarray:
    """The template's brain on the scan's RAS grid, dilated by 4 mm: an affine registration leaves a patient's
    cortex within a few millimetres of the template's, and a core at the cortical surface must not be cut."""
    from scipy import ndimage

    brain = template.derived("dilated_brain", lambda: ndimage.binary_dilation(template.brain, iterations=2))
    return resample(brain.astype(np.float32), template.affine, grid.mni_affine, grid.ras_shape) >= 0.5


def prepare_diffusion(dwi: np.ndarray, adc: np.ndarray, affine: np.ndarray, *, nihss: float,
                      side: str | None, adc_affine: np.ndarray | None = None,
                      template: Template | None = None, stride: int = SLAB_STRIDE) -> PreparedDiffusion:
    """U-Net input slabs for one patient, in any pose: registered to MNI (or recognised as MNI already), the core
    measured on the scan's own grid. ``side`` None or "unknown" -> inferred from the ADC core."""
    dwi, adc = np.asarray(dwi), np.asarray(adc)
    if dwi.ndim != 3 or adc.ndim != 3:
        raise InputValidationError(f"DWI and ADC must be 3D volumes, got {dwi.shape} and {adc.shape}")
    if dwi.shape != adc.shape:
        raise InputValidationError(f"DWI {dwi.shape} and ADC {adc.shape} do not share a grid")
    affine = check_affine(affine, "DWI affine")
    if adc_affine is not None and not np.allclose(check_affine(adc_affine, "ADC affine"), affine, atol=1e-3):
        raise InputValidationError("DWI and ADC have different affines (orientation or position)")
    if not (np.all(np.isfinite(dwi)) and np.all(np.isfinite(adc))):
        raise InputValidationError("DWI or ADC contains NaN or infinite values")
    try:
        check_nihss(nihss)
        side = check_side(side)
    except ClinicalInputError as exc:
        raise InputValidationError(str(exc)) from None
    template = template or default_template()
    ras_dwi, ras_affine, orientation = reorient_to_ras(dwi.astype(np.float32), affine)
    ras_adc, _, _ = reorient_to_ras(adc.astype(np.float32), affine)
    ras_dwi, ras_adc = np.ascontiguousarray(ras_dwi), np.ascontiguousarray(ras_adc)
    signal = _signal_mask(ras_dwi) & (ras_adc > 0)
    if signal.sum() < 1000:
        raise InputValidationError("too little brain found in the DWI/ADC (fewer than 1000 voxels with signal)")
    scale, units = detect_adc_scale(ras_adc, signal)
    ras_adc = ras_adc * np.float32(scale)
    registration = normalize_to_mni(ras_dwi, ras_affine, template)
    grid = NativeGrid(tuple(dwi.shape), orientation, ras_affine, registration.native_to_mni)
    brain = atlas_brain(grid, template) & signal
    measured = measure_core(ras_dwi, ras_adc, brain, voxel_sizes(grid.ras_affine))
    # The U-Net's channels, on the MNI grid as it was trained: the scan placed by its registered affine.
    dwi_m = resample(ras_dwi, grid.mni_affine, MNI_2MM_AFFINE, MNI_2MM_SHAPE, order=1)
    adc_m = resample(ras_adc, grid.mni_affine, MNI_2MM_AFFINE, MNI_2MM_SHAPE, order=1)
    if float(dwi_m.max()) <= 0.0:
        raise InputValidationError("the DWI does not reach the MNI brain after registration")
    brain_m = (dwi_m > 0.1 * float(np.percentile(dwi_m[dwi_m > 0], 99))) & (adc_m > 0)
    if brain_m.sum() < 1000:
        raise InputValidationError("too little brain on the MNI grid after registration (fewer than 1000 voxels)")
    core_m = resample(measured.core.astype(np.float32), grid.mni_affine, MNI_2MM_AFFINE, MNI_2MM_SHAPE) >= 0.5
    parenchyma = brain_m & (adc_m < 1.5e-3)
    resolved = infer_side(core_m, MNI_2MM_AFFINE) if side == "unknown" else side
    inferred = side == "unknown" and resolved != "unknown"
    # The side channel tells the U-Net where to read: one hemisphere, or for "bilateral" (emboli in both) the whole
    # brain. With the side unknown it is empty and the network is not run (serving.diffusion).
    side_mask = (brain_m if resolved == "bilateral" else np.zeros_like(brain_m) if resolved == "unknown" else
                 hemisphere(MNI_2MM_SHAPE, MNI_2MM_AFFINE, resolved)).astype(np.float32)
    channels = [
        np.where(brain_m, dwi_m / max(float(dwi_m[parenchyma].mean()), 1e-6), 0.0),
        np.where(brain_m, adc_m / max(float(adc_m[parenchyma].mean()), 1e-12), 0.0),
        core_m.astype(np.float32),
        side_mask,
    ]
    # [4, z, y, x] in C order: np.stack of transposed views is not, and to_slabs would then copy 50 MB by strides.
    volume = np.empty((len(channels),) + MNI_2MM_SHAPE[2:] + PADDED_INPLANE[::-1], dtype=np.float32)
    for i, c in enumerate(channels):
        volume[i] = np.transpose(pad_inplane(c.astype(np.float32)), (2, 1, 0))
    return PreparedDiffusion(volume, nihss / NIHSS_SCALE, brain, measured.core, measured.as_dict(), units, resolved,
                             inferred, grid, registration, check_stride(stride))


def average_slabs(probabilities: np.ndarray, starts: list[int] | None = None) -> np.ndarray:
    """[S, 1, 16, 128, 128] slab outputs (windows starting at ``starts``, by default the served stride's) ->
    (x, y, z) on the MNI 2 mm grid, overlaps averaged."""
    z = MNI_2MM_SHAPE[2]
    total = np.zeros((z,) + PADDED_INPLANE[::-1], dtype=np.float32)
    count = np.zeros((z, 1, 1), dtype=np.float32)
    for p, s in zip(probabilities[:, 0], slab_starts() if starts is None else starts, strict=True):
        total[s: s + SLAB] += p
        count[s: s + SLAB] += 1.0
    zyx = total / np.maximum(count, 1.0)
    return _unpad_inplane(np.transpose(zyx, (2, 1, 0)))


def mni_to_input_grid(volume: np.ndarray, grid: NativeGrid, order: int = 1) -> np.ndarray:
    """A map on the MNI 2 mm grid -> the scan's RAS grid (through the registration), zero outside the MNI grid."""
    return resample(np.asarray(volume, dtype=np.float32), MNI_2MM_AFFINE, grid.mni_affine, grid.ras_shape,
                    order=order)
