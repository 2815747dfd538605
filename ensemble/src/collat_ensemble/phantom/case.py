"""One synthetic stroke case: perfusion series, DWI/ADC, and everything that is true about it.

Every random choice comes from ``numpy.random.default_rng(seed)`` in a fixed order, so a
seed always produces the same bytes. Seeds below 1,000,000 are kept for evaluation; the
training command only draws from 1,000,000 upwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from collat_contract.clinical import CORE_ADC_THRESHOLD

from ..clinical import dawn_eligibility, defuse3_target_mismatch, mismatch, volume_ml
from ..errors import InputValidationError
from ..phases import PHASE_NAMES, collateral_maps
from .anatomy import Anatomy, anatomy_on_grid, axial_grid, mni_2mm_grid
from .grading import true_grade
from .physiology import (
    TMAX_THRESHOLD_S,
    Haemodynamics,
    Stroke,
    arterial_input,
    haemodynamics,
    tissue_concentration,
    venous_outflow,
)

# 2: the collateral grade is measured by SPEC section 4 (grading.py). 3: hypoperfused tissue shows a mild ADC decline
# (OLIGAEMIC_ADC_DECLINE); the perfusion series and every perfusion truth keep their version-2 bytes.
PHANTOM_VERSION = "3"
EVALUATION_SEED_LIMIT = 1_000_000
Modality = Literal["dce", "dsc"]
Space = Literal["mni", "native"]

# Signal models. DCE: S = S0 (1 + K_DCE C) (T1 shortening, linear at these doses).
# DSC: S = S0 exp(-K_DSC C TE) with TE = 30 ms.
K_DCE = 1.5  # 1/mM
K_DSC = 40.0  # 1/(s mM)
DSC_TE = 0.030  # s
S0 = {"gm": 1000.0, "wm": 1150.0, "csf": 500.0, "blood": 1000.0}
# Diffusion (mm^2/s) and T2-weighted b=0 signal.
ADC = {"gm": 0.80e-3, "wm": 0.70e-3, "csf": 3.0e-3, "core": 0.45e-3}
T2_S0 = {"gm": 1000.0, "wm": 800.0, "csf": 2000.0, "core": 1150.0}
B_VALUE = 1000.0
# Tissue whose flow is low enough to delay it beyond Tmax 6 s but that is not yet core loses some of its water
# mobility before the ADC reaches the core threshold (the intermediate ADC of penumbral tissue that diffusion-
# perfusion studies describe). The phantom gives it a 6 % ADC decline, ramping in over Tmax 5.5-6.5 s, so that the
# hypoperfusion the U-Net is asked for is visible on diffusion imaging, as the study's premise needs (why version 3
# added it: docs/training.md). 6 % keeps white matter (0.70e-3 -> 0.66e-3 mm^2/s) clear of the 0.62e-3 core threshold.
OLIGAEMIC_ADC_DECLINE = 0.06
OLIGAEMIC_RAMP_S = (TMAX_THRESHOLD_S - 0.5, TMAX_THRESHOLD_S + 0.5)


@dataclass(frozen=True)
class Acquisition:
    """Perfusion acquisition; defaults are the study's DCE-MRA protocol (written axial)."""

    matrix: int = 128
    fov_mm: float = 240.0
    slices: int = 20
    slice_spacing_mm: float = 7.0  # 5 mm slices with a 2 mm gap
    frames: int = 60
    frame_seconds: float = 1.6


# Native-space diffusion (--space native): a clinical axial EPI DWI in the patient's own pose.
NATIVE_VOXEL_MM = (0.9, 0.9, 5.0)
NATIVE_MATRIX = 256  # 230 mm field of view at 0.9 mm
NATIVE_SLICES = 32  # 160 mm: the brain from the foramen magnum to the vertex
MAX_ROTATION_DEG = 15.0
MAX_TRANSLATION_MM = 20.0
MAX_SCALE_CHANGE = 0.08
BRAIN_CENTRE_MNI = (0.0, -18.0, 8.0)


def native_pose(rng: np.random.Generator) -> np.ndarray:
    """A random MNI -> native mapping (RAS mm): per-axis scale within 8 %, rotations about each axis up to
    15 degrees, translation up to 20 mm on each axis; a head of another size in another position."""
    ax, ay, az = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3] = rz @ ry @ rx @ np.diag(1.0 + rng.uniform(-MAX_SCALE_CHANGE, MAX_SCALE_CHANGE, size=3))
    pose[:3, 3] = rng.uniform(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM, size=3)
    return pose


def native_grid(mni_to_native: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The axial scanner grid (native RAS) centred on where the pose put the brain's centre."""
    centre = (mni_to_native @ np.array([*BRAIN_CENTRE_MNI, 1.0]))[:3]
    return axial_grid(NATIVE_MATRIX, NATIVE_MATRIX * NATIVE_VOXEL_MM[0], NATIVE_SLICES, NATIVE_VOXEL_MM[2],
                      centre_mm=tuple(centre))


def bias_field(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative receive-coil field (linear and quadratic terms), deviating 10-25 % at most."""
    axes = [np.linspace(-1.0, 1.0, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    terms = [x, y, z, x * x, y * y, z * z, x * y]
    field = sum(c * t for c, t in zip(rng.uniform(-1.0, 1.0, size=len(terms)), terms, strict=True))
    field = field / max(float(np.abs(field).max()), 1e-6)
    return (1.0 + rng.uniform(0.10, 0.25) * field).astype(np.float32)


@dataclass
class PhantomCase:
    seed: int
    modality: str
    stroke: Stroke
    perfusion: np.ndarray  # (x, y, z, t) int16 magnitude
    perfusion_affine: np.ndarray
    frame_seconds: float
    dwi: np.ndarray
    adc: np.ndarray
    diffusion_affine: np.ndarray
    tmax: np.ndarray  # diffusion grid, s
    core: np.ndarray  # diffusion grid, bool
    lesion: np.ndarray  # diffusion grid, bool: Tmax > 6 s united with core
    reference_maps: np.ndarray  # perfusion grid (x, y, z, 5)
    brain_mask: np.ndarray  # perfusion grid, the reference method's mask
    nihss: int
    age: int
    truth: dict = field(default_factory=dict)
    mni_to_native: np.ndarray | None = None  # the true pose of a native-space case (RAS mm), None in MNI space


def _vessel_fractions(anat: Anatomy, stroke: Stroke) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume fractions of arteries (both M1 segments, the occluded one only proximally) and of the SSS."""
    w = anat.world

    def segment(a, b, radius):
        a, b = np.array(a, np.float32), np.array(b, np.float32)
        d = b - a
        s = np.clip(((w - a) @ d) / float(d @ d), 0.0, 1.0)
        dist = np.linalg.norm(w - (a + s[..., None] * d), axis=-1)
        return np.exp(-((dist / radius) ** 2))

    healthy = -stroke.sign
    arteries = 0.5 * segment((healthy * 10, 2, -14), (healthy * 46, 6, -4), 2.5)
    arteries += 0.5 * segment((stroke.sign * 10, 2, -14), (stroke.sign * 16, 3, -12), 2.5)
    outside = ~anat.envelope
    dist_out = ndimage.distance_transform_edt(outside, sampling=np.abs(np.diag(anat.affine))[:3])
    sss = (np.abs(w[..., 0]) < 4.0) & (dist_out > 0) & (dist_out <= 5.0) & (w[..., 2] > 0) & (w[..., 1] > -100)
    return np.clip(arteries, 0.0, 1.0).astype(np.float32), (0.7 * sss).astype(np.float32)


def _signal(conc: np.ndarray, s0: np.ndarray, modality: str) -> np.ndarray:
    if modality == "dce":
        return s0 * (1.0 + K_DCE * conc)
    return s0 * np.exp(-K_DSC * conc * DSC_TE)


def _rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    n1 = rng.standard_normal(signal.shape, dtype=np.float32)
    n2 = rng.standard_normal(signal.shape, dtype=np.float32)
    n1 *= sigma
    n2 *= sigma
    n1 += signal
    return np.sqrt(n1 * n1 + n2 * n2)


def _move(series: np.ndarray, rng: np.random.Generator, voxel_mm: np.ndarray) -> np.ndarray:
    """Per-frame rigid motion: in-plane rotation up to 1.5 degrees and translation up to 1.5 mm."""
    centre = (np.array(series.shape[:3]) - 1) / 2.0
    out = np.empty_like(series)
    for t in range(series.shape[-1]):
        angle = np.deg2rad(rng.uniform(-1.5, 1.5))
        shift = rng.uniform(-1.5, 1.5, size=3) / voxel_mm
        shift[2] = 0.0
        rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        offset = centre - rot @ centre + shift
        out[..., t] = ndimage.affine_transform(series[..., t], rot, offset, order=1, mode="nearest")
    return out


def turn_in_plane(series: np.ndarray, affine: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """A series (x, y, z[, t]) of the head turned ``degrees`` about the scanner's z axis through the grid centre: the
    voxels move, the affine stays (a patient lying turned), and the true MNI -> scanner map that results.
    Axial grids only (the phantom's)."""
    centre = (np.array(series.shape[:3]) - 1) / 2.0
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    to_mm = np.asarray(affine, dtype=np.float64)[:3, :3]
    to_input = np.linalg.inv(to_mm) @ rotation.T @ to_mm
    offset = centre - to_input @ centre
    frames = series[..., None] if series.ndim == 3 else series
    out = np.stack([ndimage.affine_transform(frames[..., t].astype(np.float32), to_input, offset, order=1)
                    for t in range(frames.shape[-1])], axis=-1)
    centre_mm = to_mm @ centre + affine[:3, 3]
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, centre_mm - rotation @ centre_mm
    return (out[..., 0] if series.ndim == 3 else out), pose


def sample_clinical(lesion_ml: float, rng: np.random.Generator) -> tuple[int, int]:
    """NIHSS grows with the hypoperfused volume (about 1 point per 9 mL); age 40-92."""
    nihss = int(np.clip(round(2.0 + lesion_ml / 9.0 + rng.normal(0.0, 1.5)), 0, 42))
    age = int(rng.integers(40, 93))
    return nihss, age


def generate_case(seed: int, *, modality: Modality = "dce", strength: int | None = None, side: str | None = None,
                  snr: float = 30.0, motion: bool = False, acquisition: Acquisition | None = None,
                  space: Space = "mni") -> PhantomCase:
    """One case. ``strength`` (0..5, default drawn) sets the haemodynamics' collateral strength; the case's
    collateral grade (truth ``collateral_grade``) is measured from them by SPEC section 4 (:mod:`.grading`).
    ``space="native"`` writes the DWI/ADC (and their truth) on a scanner grid in a random head pose
    (see :func:`native_pose`) with a bias field; everything else, the random stream included, is unchanged."""
    if modality not in ("dce", "dsc"):
        raise InputValidationError(f"unknown modality {modality!r} (dce or dsc)")
    if strength is not None and not 0 <= strength <= 5:
        raise InputValidationError(f"collateral strength must be 0..5, got {strength}")
    if side is not None and side not in ("left", "right"):
        raise InputValidationError(f"side must be left or right, got {side!r}")
    if snr <= 0:
        raise InputValidationError(f"SNR must be positive, got {snr}")
    if space not in ("mni", "native"):
        raise InputValidationError(f"space must be mni or native, got {space!r}")
    acq = acquisition or Acquisition()
    rng = np.random.default_rng(seed)
    drawn_grade = int(rng.integers(0, 6))
    drawn_side = "left" if rng.random() < 0.5 else "right"
    stroke = Stroke(side or drawn_side, drawn_grade if strength is None else strength,
                    float(rng.uniform(0.6, 1.1)), float(rng.uniform(0.8, 1.2)))

    # Perfusion grid
    p_affine, p_shape = axial_grid(acq.matrix, acq.fov_mm, acq.slices, acq.slice_spacing_mm)
    anat = anatomy_on_grid(p_affine, p_shape)
    haemo = haemodynamics(anat, stroke, rng)
    times = np.arange(acq.frames) * acq.frame_seconds
    tissue = anat.tissue
    where = tissue > 0.02
    conc = np.zeros(p_shape + (acq.frames,), dtype=np.float32)
    conc[where] = tissue[where][:, None] * tissue_concentration(times, haemo, where)
    arteries, sss = _vessel_fractions(anat, stroke)
    aif = arterial_input(times)
    venous = venous_outflow(times, aif)
    conc += arteries[..., None] * aif[None, None, None, :].astype(np.float32)
    conc += sss[..., None] * venous[None, None, None, :].astype(np.float32)
    s0 = anat.gm * S0["gm"] + anat.wm * S0["wm"] + anat.csf * S0["csf"]
    s0 = s0 + (arteries + sss) * S0["blood"]
    clean = _signal(conc, s0[..., None], modality).astype(np.float32)
    reference = collateral_maps(clean, modality)
    true_cps, grade_fractions = true_grade(conc, reference.windows, tissue > 0.3, p_affine, stroke.side)
    noisy = _move(clean, rng, np.abs(np.diag(p_affine))[:3]) if motion else clean
    sigma = float(s0[anat.envelope].mean()) / snr
    # Stored as int16, as scanners store magnitude images (and 3x faster to compress).
    perfusion = np.round(_rician(noisy, sigma, rng)).clip(0, np.iinfo(np.int16).max).astype(np.int16)

    # Diffusion grid: MNI 2 mm, or a scanner grid whose voxels sit where the pose puts them in MNI space.
    pose_rng = np.random.default_rng(seed + 104_729)  # its own stream: MNI-space cases keep their bytes
    if space == "native":
        mni_to_native = native_pose(pose_rng)
        d_affine, d_shape = native_grid(mni_to_native)
        grid_in_mni = np.linalg.inv(mni_to_native) @ d_affine
    else:
        mni_to_native = None
        d_affine, d_shape = mni_2mm_grid()
        grid_in_mni = d_affine
    danat = anatomy_on_grid(grid_in_mni, d_shape)
    dhaemo: Haemodynamics = haemodynamics(danat, stroke, np.random.default_rng(seed + 7_919))
    brain = danat.tissue > 0.3
    low, high = OLIGAEMIC_RAMP_S
    decline = OLIGAEMIC_ADC_DECLINE * np.clip((dhaemo.delay - low) / (high - low), 0.0, 1.0)
    adc = (danat.gm * ADC["gm"] + danat.wm * ADC["wm"]) * (1.0 - decline) + danat.csf * ADC["csf"]
    b0 = danat.gm * T2_S0["gm"] + danat.wm * T2_S0["wm"] + danat.csf * T2_S0["csf"]
    adc = np.where(dhaemo.core, danat.tissue * ADC["core"] + danat.csf * ADC["csf"], adc)
    b0 = np.where(dhaemo.core, danat.tissue * T2_S0["core"] + danat.csf * T2_S0["csf"], b0)
    # The true core is what SPEC section 4 measures, on the noiseless ADC: partial volume with
    # CSF lifts border voxels above the threshold, exactly as on a scanner.
    core = danat.envelope & (adc < CORE_ADC_THRESHOLD)
    lesion = ((dhaemo.delay > TMAX_THRESHOLD_S) & brain) | core
    adc = (adc * (1.0 + rng.normal(0.0, 0.03, size=d_shape))).astype(np.float32)
    adc = np.where(danat.envelope, np.clip(adc, 0.0, None), 0.0).astype(np.float32)
    dwi = np.where(danat.envelope, b0 * np.exp(-B_VALUE * adc), 0.0)
    if space == "native":  # the coil's field scales both b-values alike: the ADC does not see it
        dwi = dwi * bias_field(d_shape, pose_rng)
    dwi = _rician(dwi.astype(np.float32), float(dwi[brain].mean()) / 25.0, rng).astype(np.float32)

    voxel_ml = float(abs(np.linalg.det(d_affine[:3, :3]))) / 1000.0
    core_ml = volume_ml(core, d_affine)
    lesion_ml = volume_ml(lesion, d_affine)
    nihss, age = sample_clinical(lesion_ml, rng)
    mm = mismatch(lesion_ml, core_ml)
    truth = {
        "phantom_version": PHANTOM_VERSION,
        "seed": seed,
        "modality": modality,
        "collateral_grade": true_cps,  # SPEC section 4 on the noiseless contrast (grading.py)
        "collateral_strength": stroke.grade,  # the drawn parameter of the haemodynamics
        "hypoperfused_fraction": {k: round(v, 4) for k, v in grade_fractions.items()},
        "side": stroke.side,
        "territory_size": round(stroke.size, 4),
        "snr": snr,
        "motion": motion,
        "nihss": nihss,
        "age": age,
        "frame_seconds": acq.frame_seconds,
        "core_ml": round(core_ml, 3),
        "hypoperfusion_ml": round(lesion_ml, 3),
        "tmax6_ml": round(float(((dhaemo.delay > TMAX_THRESHOLD_S) & brain).sum()) * voxel_ml, 3),
        "mismatch_ml": round(mm.volume_ml, 3),
        "mismatch_ratio": round(mm.ratio, 3),
        "defuse3_target_mismatch": defuse3_target_mismatch(core_ml, mm).eligible,
        "dawn": dawn_eligibility(age, nihss, core_ml).as_dict(),
        "reference_windows": reference.windows.as_dict(),
        "phases": list(PHASE_NAMES),
        "synthetic": "digital phantom: not patient data",
        "space": space,
    }
    if mni_to_native is not None:
        truth["mni_to_native"] = [[round(float(v), 9) for v in row] for row in mni_to_native]
    return PhantomCase(seed, modality, stroke, perfusion, p_affine, acq.frame_seconds, dwi, adc, d_affine,
                       dhaemo.delay, core, lesion, reference.maps, reference.mask, nihss, age, truth, mni_to_native)


CASE_FILES = {
    "perfusion": "perfusion.nii.gz",
    "dwi": "dwi.nii.gz",
    "adc": "adc.nii.gz",
    "truth_maps": "truth_maps.nii.gz",
    "truth_brain": "truth_brain.nii.gz",
    "truth_tmax": "truth_tmax.nii.gz",
    "truth_core": "truth_core.nii.gz",
    "truth_lesion": "truth_lesion.nii.gz",
}


DWI_B_VALUE = 1000.0  # s/mm^2: the phantom's DWI is a b=1000 trace, as the study's were
DWI_BVAL_FILE = "dwi.bval"


def write_case(case: PhantomCase, out_dir: str | Path) -> dict[str, Path]:
    """NIfTI files with their affines (and pixdim[4] = frame time for the series), ``dwi.bval`` and ``truth.json``.

    Files are written under temporary names and renamed at the end, so a crash leaves no
    half-written case behind.
    """
    import nibabel as nib

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "perfusion": (case.perfusion, case.perfusion_affine),
        "dwi": (case.dwi, case.diffusion_affine),
        "adc": (case.adc, case.diffusion_affine),
        "truth_maps": (case.reference_maps, case.perfusion_affine),
        "truth_brain": (case.brain_mask.astype(np.uint8), case.perfusion_affine),
        "truth_tmax": (case.tmax.astype(np.float32), case.diffusion_affine),
        "truth_core": (case.core.astype(np.uint8), case.diffusion_affine),
        "truth_lesion": (case.lesion.astype(np.uint8), case.diffusion_affine),
    }
    written: dict[str, Path] = {}
    pending: list[tuple[Path, Path]] = []
    for key, (data, affine) in arrays.items():
        # NIfTI stores Fortran order; handing nibabel such an array avoids a slow chunked transpose.
        img = nib.Nifti1Image(np.asfortranarray(data), affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        if key == "perfusion":
            img.header.set_xyzt_units("mm", "sec")
            zooms = list(img.header.get_zooms()[:3]) + [case.frame_seconds]
            img.header.set_zooms(zooms)
        if key == "adc":
            img.header["descrip"] = b"ADC mm2/s"
        final = out / CASE_FILES[key]
        tmp = out / f".{CASE_FILES[key]}.partial.nii.gz"
        nib.save(img, str(tmp))
        pending.append((tmp, final))
        written[key] = final
    # The DWI's b-value beside it, as BIDS and dcm2niix write it: the SDK reads it for the server's b-value gate.
    tmp_bval = out / ".dwi.bval.partial"
    tmp_bval.write_text(f"{DWI_B_VALUE:g}\n")
    pending.append((tmp_bval, out / DWI_BVAL_FILE))
    truth = {**case.truth, "files": {k: p.name for k, p in written.items()}}
    tmp_truth = out / ".truth.json.partial"
    tmp_truth.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    for tmp, final in pending:
        tmp.replace(final)
    tmp_truth.replace(out / "truth.json")
    written["truth"] = out / "truth.json"
    return written
