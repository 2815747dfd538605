"""One synthetic case: perfusion series, DWI/ADC, and everything that is true about it.

Every random choice comes from ``numpy.random.default_rng(seed)`` in a fixed order, or from a stream of its own
(the pose, the diffusion haemodynamics, and in version 4 the kind, its lesions and the anatomy/acquisition
variation), so a seed always produces the same bytes, and what a later version added moves nothing an earlier
one drew. Seeds below 1,000,000 are kept for evaluation; the training command only draws from 1,000,000 upwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from ..clinical import dawn_eligibility, defuse3_target_mismatch, mismatch, volume_ml
from ..errors import InputValidationError
from ..phases import PHASE_NAMES, collateral_maps
from .anatomy import Anatomy, anatomy_on_grid, axial_grid, mni_2mm_grid
from .diffusion import (  # noqa: F401  (ADC, T2_S0, B_VALUE and the oligaemic constants: case.* names since v1-3)
    ADC,
    B_VALUE,
    OLIGAEMIC_ADC_DECLINE,
    OLIGAEMIC_RAMP_S,
    T2_S0,
    OldTissue,
    core_eligible,
    diffusion_images,
    rician,
)
from .grades import MAX_DRAWS, MCAParameters, draw_parameters, target_grade
from .grading import true_grade
from .kinds import KINDS, NIHSS_RANGE, LesionPlan, calibrate_cores, old_infarct_weight, plan_lesions
from .physiology import (
    Stroke,
    Territory,
    arterial_input,
    haemodynamics,
    tissue_concentration,
    venous_outflow,
)
from .variation import draw_variation, vary_anatomy

# 2: the collateral grade is measured by SPEC section 4 (grading.py). 3: hypoperfused tissue shows a mild ADC decline
# (OLIGAEMIC_ADC_DECLINE); the perfusion series and every perfusion truth keep their version-2 bytes. 4: what
# hospitals scan: kinds of case (lacune, posterior, mimic, chronic, emboli beside the MCA stroke; kinds.py), anatomy
# that varies (atrophy, ventricles, white-matter lesions) and DWI acquisitions that vary (b-value, b0 contrast, SNR;
# variation.py); MCA perfusion and its truths keep their bytes, MCA diffusion images change.
# 5: MCA strokes of every collateral grade with the study's frequencies (grades.py: each case drawn for a grade,
# CPS 0 as collateral failure across a large territory); a case asked for by collateral strength keeps version 4's
# bytes.
PHANTOM_VERSION = "5"
EVALUATION_SEED_LIMIT = 1_000_000
Modality = Literal["dce", "dsc"]
Space = Literal["mni", "native"]

# Signal models. DCE: S = S0 (1 + K_DCE C) (T1 shortening, linear at these doses).
# DSC: S = S0 exp(-K_DSC C TE) with TE = 30 ms.
K_DCE = 1.5  # 1/mM
K_DSC = 40.0  # 1/(s mM)
DSC_TE = 0.030  # s
S0 = {"gm": 1000.0, "wm": 1150.0, "csf": 500.0, "blood": 1000.0}
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
    kind: str = "mca"  # one of kinds.KINDS
    wm_lesions: np.ndarray | None = None  # diffusion grid, bool: white-matter lesions (not stroke)
    old_infarct: np.ndarray | None = None  # diffusion grid, bool: a chronic infarct's tissue (kind "chronic")

    @property
    def clinical_side(self) -> str:
        """The side a clinician gives with the request: the lesion's, "bilateral" for emboli, and a lateralised
        guess for a mimic or an old infarct (symptoms have a side even without an acute lesion)."""
        return str(self.truth["clinical_side"])


def _vessel_fractions(anat: Anatomy, occluded: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume fractions of arteries (both M1 segments, the occluded one, ``occluded`` -1 left / +1 right,
    only proximally; both whole for None) and of the SSS."""
    w = anat.world

    def segment(a, b, radius):
        a, b = np.array(a, np.float32), np.array(b, np.float32)
        d = b - a
        s = np.clip(((w - a) @ d) / float(d @ d), 0.0, 1.0)
        dist = np.linalg.norm(w - (a + s[..., None] * d), axis=-1)
        return np.exp(-((dist / radius) ** 2))

    if occluded is None:
        arteries = 0.5 * segment((-10, 2, -14), (-46, 6, -4), 2.5) + 0.5 * segment((10, 2, -14), (46, 6, -4), 2.5)
    else:
        healthy = -occluded
        arteries = 0.5 * segment((healthy * 10, 2, -14), (healthy * 46, 6, -4), 2.5)
        arteries += 0.5 * segment((occluded * 10, 2, -14), (occluded * 16, 3, -12), 2.5)
    outside = ~anat.envelope
    dist_out = ndimage.distance_transform_edt(outside, sampling=np.abs(np.diag(anat.affine))[:3])
    sss = (np.abs(w[..., 0]) < 4.0) & (dist_out > 0) & (dist_out <= 5.0) & (w[..., 2] > 0) & (w[..., 1] > -100)
    return np.clip(arteries, 0.0, 1.0).astype(np.float32), (0.7 * sss).astype(np.float32)


def _signal(conc: np.ndarray, s0: np.ndarray, modality: str) -> np.ndarray:
    if modality == "dce":
        return s0 * (1.0 + K_DCE * conc)
    return s0 * np.exp(-K_DSC * conc * DSC_TE)


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


def sample_clinical(lesion_ml: float, rng: np.random.Generator, kind: str = "mca",
                    core_ml: float = 0.0) -> tuple[int, int]:
    """NIHSS and age (40-92). MCA, as versions 1-3 drew it: NIHSS grows with the hypoperfused volume (about 1 point
    per 9 mL). A lacune's grows with its core (about 1 point per 0.2 mL), a posterior or embolic stroke's with its
    hypoperfusion (1 point per 6 mL), each within its kind's range (kinds.NIHSS_RANGE); a mimic's and an old
    infarct's are uniform over theirs: the deficit is real, its cause is not on the images."""
    lo, hi = NIHSS_RANGE[kind]
    if kind == "mca":
        nihss = int(np.clip(round(2.0 + lesion_ml / 9.0 + rng.normal(0.0, 1.5)), lo, hi))
    elif kind == "lacune":
        nihss = int(np.clip(round(1.0 + 5.0 * core_ml + rng.normal(0.0, 1.5)), lo, hi))
    elif kind in ("posterior", "emboli"):
        nihss = int(np.clip(round(2.0 + lesion_ml / 6.0 + rng.normal(0.0, 2.0)), lo, hi))
    else:
        nihss = int(rng.integers(lo, hi + 1))
    age = int(rng.integers(40, 93))
    return nihss, age


def _mca_plan(stroke: Stroke) -> LesionPlan:
    """Versions 1-3's stroke: one MCA territory whose core radius is the stroke's own (not sized on the grid)."""
    return LesionPlan("mca", stroke.side, str(stroke.side), (stroke.mca_territory(),), (None,), (1.0,), stroke.grade,
                      None, "mca")


def _lesion_side(plan: LesionPlan, core: np.ndarray, world: np.ndarray) -> str | None:
    """The plan's side; for a territory free to cross the midline (brainstem, lacune), the side holding most of
    its core (the plan's when there is none)."""
    if plan.side in (None, "bilateral") or all(t.hemisphere is not None for t in plan.territories):
        return plan.side
    x = world[..., 0][core]
    left, right = int((x < 0).sum()), int((x > 0).sum())
    return plan.side if left == right else "left" if left > right else "right"


def _territory_truth(territories: tuple[Territory, ...]) -> list[dict]:
    return [{"site": t.site, "centre_mni": [round(float(v), 2) for v in t.centre],
             "radii_mm": [round(float(v) * t.scale, 2) for v in t.radii], "max_delay_s": round(t.max_delay_s, 3),
             "core_radius": round(t.core_radius, 4)} for t in territories]


def generate_case(seed: int, *, modality: Modality = "dce", strength: int | None = None, side: str | None = None,
                  snr: float = 30.0, motion: bool = False, acquisition: Acquisition | None = None,
                  space: Space = "mni", kind: str | None = None, grade: int | None = None) -> PhantomCase:
    """One case. ``kind`` (:data:`.kinds.KINDS`; None: "mca"; ``draw_kind(seed)`` for the mix hospitals scan) says
    what the scan holds. An MCA case is drawn for a collateral grade (version 5, :mod:`.grades`): ``grade`` (0..5)
    asks for one, by default the seed draws it with the study's frequencies; the grade (truth ``collateral_grade``)
    is then measured by SPEC section 4 (:mod:`.grading`) as always, and a draw that reads another is drawn again.
    ``strength`` (0..5) instead sets the haemodynamics' collateral strength directly (an MCA case then is
    version 4's, to the bit; it also sets a posterior or embolic territory's), its grade whatever it measures;
    other kinds are not graded (None). ``side`` forces the lesion's side (mca, lacune, posterior) or the
    clinician's (mimic, chronic); emboli lie in both hemispheres. ``space="native"`` writes the DWI/ADC (and their
    truth) on a scanner grid in a random head pose (see :func:`native_pose`) with a bias field; for an MCA case
    everything else, the random stream included, is unchanged (other kinds size their cores on the diffusion grid,
    :func:`.kinds.calibrate_cores`, so their territories can differ a little between spaces)."""
    if modality not in ("dce", "dsc"):
        raise InputValidationError(f"unknown modality {modality!r} (dce or dsc)")
    if strength is not None and not 0 <= strength <= 5:
        raise InputValidationError(f"collateral strength must be 0..5, got {strength}")
    if grade is not None and not 0 <= grade <= 5:
        raise InputValidationError(f"a collateral grade is 0..5, got {grade}")
    if grade is not None and strength is not None:
        raise InputValidationError("give a collateral grade or a collateral strength, not both")
    if side is not None and side not in ("left", "right"):
        raise InputValidationError(f"side must be left or right, got {side!r}")
    if snr <= 0:
        raise InputValidationError(f"SNR must be positive, got {snr}")
    if space not in ("mni", "native"):
        raise InputValidationError(f"space must be mni or native, got {space!r}")
    kind = "mca" if kind is None else kind
    if kind not in KINDS:
        raise InputValidationError(f"unknown kind {kind!r} ({', '.join(KINDS)})")
    if grade is not None and kind != "mca":
        raise InputValidationError(f"only MCA strokes are graded (SPEC section 4), not {kind}")
    options = {"modality": modality, "side": side, "snr": snr, "motion": motion, "acquisition": acquisition,
               "space": space, "kind": kind}
    if kind != "mca" or strength is not None:
        return _generate(seed, strength=strength, mca=None, **options)
    target = target_grade(seed) if grade is None else grade
    best: PhantomCase | None = None
    for attempt in range(MAX_DRAWS):
        case = _generate(seed, strength=None, mca=draw_parameters(target, seed, attempt), **options)
        case.truth["requested_grade"] = target
        if case.truth["collateral_grade"] == target:
            return case
        if best is None or abs(case.truth["collateral_grade"] - target) < abs(best.truth["collateral_grade"] - target):
            best = case
    return best  # type: ignore[return-value]  # MAX_DRAWS >= 1: the closest grade, its truth saying so


def _generate(seed: int, *, modality: Modality, strength: int | None, side: str | None, snr: float, motion: bool,
              acquisition: Acquisition | None, space: Space, kind: str, mca: MCAParameters | None) -> PhantomCase:
    """:func:`generate_case` once its options are checked; ``mca``: version 5's strength, size and profile of an
    MCA territory (None: version 4's draw, or ``strength``)."""
    acq = acquisition or Acquisition()
    rng = np.random.default_rng(seed)
    drawn_grade = int(rng.integers(0, 6))
    drawn_side = "left" if rng.random() < 0.5 else "right"
    stroke = Stroke(side or drawn_side, drawn_grade if strength is None else strength,
                    float(rng.uniform(0.6, 1.1)), float(rng.uniform(0.8, 1.2)))
    if mca is not None:  # version 5: drawn for a grade (the main stream's draws above are kept all the same)
        stroke = replace(stroke, grade=mca.strength, size=mca.size, profile=mca.profile)

    # Diffusion grid first (its own streams): version 4 sizes the lesions' cores on it. MNI 2 mm, or a scanner grid
    # whose voxels sit where the pose puts them in MNI space.
    pose_rng = np.random.default_rng(seed + 104_729)  # its own stream: MNI-space cases keep their bytes
    if space == "native":
        mni_to_native = native_pose(pose_rng)
        d_affine, d_shape = native_grid(mni_to_native)
        grid_in_mni = np.linalg.inv(mni_to_native) @ d_affine
    else:
        mni_to_native = None
        d_affine, d_shape = mni_2mm_grid()
        grid_in_mni = d_affine
    variation = draw_variation(seed, T2_S0)
    danat, wml = vary_anatomy(anatomy_on_grid(grid_in_mni, d_shape), variation)
    voxel_ml = float(abs(np.linalg.det(d_affine[:3, :3]))) / 1000.0
    plan = _mca_plan(stroke) if kind == "mca" else plan_lesions(kind, seed, side or drawn_side, strength)
    territories = calibrate_cores(plan, danat.world, core_eligible(danat), voxel_ml)

    # Perfusion grid (the template as it is: anatomy variation is the diffusion grid's)
    p_affine, p_shape = axial_grid(acq.matrix, acq.fov_mm, acq.slices, acq.slice_spacing_mm)
    anat = anatomy_on_grid(p_affine, p_shape)
    haemo = haemodynamics(anat, territories, rng)
    times = np.arange(acq.frames) * acq.frame_seconds
    tissue = anat.tissue
    where = tissue > 0.02
    conc = np.zeros(p_shape + (acq.frames,), dtype=np.float32)
    conc[where] = tissue[where][:, None] * tissue_concentration(times, haemo, where)
    arteries, sss = _vessel_fractions(anat, stroke.sign if kind == "mca" else None)
    aif = arterial_input(times)
    venous = venous_outflow(times, aif)
    conc += arteries[..., None] * aif[None, None, None, :].astype(np.float32)
    conc += sss[..., None] * venous[None, None, None, :].astype(np.float32)
    s0 = anat.gm * S0["gm"] + anat.wm * S0["wm"] + anat.csf * S0["csf"]
    s0 = s0 + (arteries + sss) * S0["blood"]
    clean = _signal(conc, s0[..., None], modality).astype(np.float32)
    reference = collateral_maps(clean, modality)
    true_cps: int | None = None
    grade_fractions: dict[str, float] = {}
    if kind == "mca":  # SPEC section 4 grades an MCA territory against its mirror: only MCA cases have a grade
        true_cps, grade_fractions = true_grade(conc, reference.windows, tissue > 0.3, p_affine, str(stroke.side))
    noisy = _move(clean, rng, np.abs(np.diag(p_affine))[:3]) if motion else clean
    sigma = float(s0[anat.envelope].mean()) / snr
    # Stored as int16, as scanners store magnitude images (and 3x faster to compress).
    perfusion = np.round(rician(noisy, sigma, rng)).clip(0, np.iinfo(np.int16).max).astype(np.int16)

    # Diffusion images
    dhaemo = haemodynamics(danat, territories, np.random.default_rng(seed + 7_919))
    brain = danat.tissue > 0.3
    old, old_mask = None, None
    if plan.old_infarct is not None:
        weight = old_infarct_weight(plan.old_infarct, danat.world, brain, voxel_ml)
        old = OldTissue(weight, plan.old_infarct.adc, plan.old_infarct.t2_factor * variation.t2_b0["csf"])
        old_mask = (weight >= 0.5) & brain
    bias = bias_field(d_shape, pose_rng) if space == "native" else None
    images = diffusion_images(danat, dhaemo, variation, wml, old, rng, bias)
    core, lesion = images.core, images.lesion

    lesion_side = _lesion_side(plan, core, danat.world)
    clinical_side = plan.clinical_side if plan.side is None else str(lesion_side)
    if kind != "mca":
        stroke = replace(stroke, side=lesion_side, grade=stroke.grade if plan.strength is None else plan.strength)
    core_ml = volume_ml(core, d_affine)
    lesion_ml = volume_ml(lesion, d_affine)
    nihss, age = sample_clinical(lesion_ml, rng, kind, core_ml)
    mm = mismatch(lesion_ml, core_ml)
    truth = {
        "phantom_version": PHANTOM_VERSION,
        "seed": seed,
        "modality": modality,
        "kind": kind,
        "collateral_grade": true_cps,  # SPEC section 4 on the noiseless contrast (grading.py); None unless MCA
        "collateral_strength": plan.strength,  # the drawn parameter of the haemodynamics; None where none used it
        "requested_grade": None,  # the grade an MCA case was drawn for (version 5); None for a strength or a kind
        "mca_profile": round(stroke.profile, 3) if kind == "mca" else None,
        "hypoperfused_fraction": {k: round(v, 4) for k, v in grade_fractions.items()},
        "side": lesion_side,
        "clinical_side": clinical_side,
        "territory_size": round(stroke.size, 4) if kind == "mca" else None,
        "site": plan.site,
        "territories": _territory_truth(territories),
        "snr": snr,
        "motion": motion,
        "nihss": nihss,
        "age": age,
        "frame_seconds": acq.frame_seconds,
        "core_ml": round(core_ml, 3),
        "hypoperfusion_ml": round(lesion_ml, 3),
        "tmax6_ml": round(float(images.tmax6.sum()) * voxel_ml, 3),
        "mismatch_ml": round(mm.volume_ml, 3),
        "mismatch_ratio": round(mm.ratio, 3),
        "defuse3_target_mismatch": defuse3_target_mismatch(core_ml, mm).eligible,
        "dawn": dawn_eligibility(age, nihss, core_ml).as_dict(),
        "old_infarct_ml": round(float(old_mask.sum()) * voxel_ml, 3) if old_mask is not None else 0.0,
        "anatomy": variation.summary(float(wml.sum()) * voxel_ml),
        "dwi_b_value": variation.b_value,
        "dwi_snr": round(variation.snr, 2),
        "dwi_t2_b0": {k: round(v, 1) for k, v in variation.t2_b0.items()},
        "reference_windows": reference.windows.as_dict(),
        "phases": list(PHASE_NAMES),
        "synthetic": "digital phantom: not patient data",
        "space": space,
    }
    if mni_to_native is not None:
        truth["mni_to_native"] = [[round(float(v), 9) for v in row] for row in mni_to_native]
    return PhantomCase(seed, modality, stroke, perfusion, p_affine, acq.frame_seconds, images.dwi, images.adc,
                       d_affine, dhaemo.delay, core, lesion, reference.maps, reference.mask, nihss, age, truth,
                       mni_to_native, kind, wml, old_mask)


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


DWI_B_VALUE = 1000.0  # s/mm^2: the nominal b-value (the study's); version 4 draws each case's (truth dwi_b_value)
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
    tmp_bval.write_text(f"{float(case.truth.get('dwi_b_value', DWI_B_VALUE)):g}\n")
    pending.append((tmp_bval, out / DWI_BVAL_FILE))
    truth = {**case.truth, "files": {k: p.name for k, p in written.items()}}
    tmp_truth = out / ".truth.json.partial"
    tmp_truth.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    for tmp, final in pending:
        tmp.replace(final)
    tmp_truth.replace(out / "truth.json")
    written["truth"] = out / "truth.json"
    return written
