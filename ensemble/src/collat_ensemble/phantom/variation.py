"""What differs between patients and scanners on the diffusion images (phantom version 4).

The MNI template is one young adult's brain scanned once. Hospital patients are older: their sulci are wider
(atrophy), their ventricles larger, their white matter patched with small-vessel lesions; and every scanner
weights its DWI a little differently (b-value, T2 contrast of the b=0 image, noise). A U-Net trained on the
template alone reads any of these as stroke, so each case draws how much of each it has (often none) from its
own random stream; the perfusion grid is never touched, so MCA perfusion keeps its bytes.

* atrophy a (0 .. 0.5): grey matter loses up to the fraction a where sulcal CSF surrounds it; the CSF takes its
  place (wider sulci);
* ventricles: the ventricular CSF scaled by s (1 .. 1.6) about its centroid; the tissue it grows into gives way;
* white-matter lesions: ellipsoidal patches (2-6.5 mm radii) in periventricular and deep white matter, 0.5-30 mL
  in all; their white matter diffuses at 0.9e-3 - 1.2e-3 mm^2/s (never near the 0.62e-3 core threshold) and its
  b0 is 1.8-2.3 times normal white matter's (T2 hyperintense, still below CSF), enough that it shines through on
  the DWI even at the highest ADC and b-value (1.8 exp(-1100 x 0.5e-3) > 1);
* acquisition: b-value 900-1100 s/mm^2, the b0's WM/GM and CSF/GM ratios each within 15 %, DWI SNR 15-40.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from ..geometry import voxel_sizes
from .anatomy import Anatomy, load_templates

STREAM_BASE = 4  # phantom version 4's streams: default_rng([seed, STREAM_BASE, tag]), clear of every seed + prime
VARIATION_STREAM = 3


def stream(seed: int, tag: int) -> np.random.Generator:
    """A random stream of its own for one aspect of a case: drawing more or less from it moves no other stream."""
    return np.random.default_rng([seed, STREAM_BASE, tag])


# Where the ventricles are looked for (MNI mm): the largest CSF body in this box is the lateral + third ventricles.
VENTRICLE_BOX_MM = ((-30.0, 30.0), (-50.0, 35.0), (-8.0, 34.0))
# Periventricular caps and deep white matter (MNI mm, x mirrored): where small-vessel lesions gather.
WML_REGIONS_MM = (
    ((10.0, 26.0), (12.0, 30.0), (2.0, 22.0)),  # frontal caps
    ((16.0, 32.0), (-58.0, -36.0), (4.0, 26.0)),  # occipital caps
    ((14.0, 34.0), (-40.0, 20.0), (18.0, 42.0)),  # corona radiata / centrum semiovale
)
WML_MAX_PATCHES = 80


@dataclass(frozen=True)
class Patch:
    """One white-matter lesion: an axis-aligned ellipsoid in MNI mm."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]


@dataclass(frozen=True)
class Variation:
    """One case's anatomy and DWI acquisition (see the module docstring)."""

    atrophy: float
    ventricle_scale: float
    wml_target_ml: float
    patches: tuple[Patch, ...]
    wml_adc: float  # mm^2/s
    wml_t2_factor: float  # lesioned white matter's b0 over normal white matter's
    b_value: float  # s/mm^2
    snr: float  # DWI: mean brain signal / noise SD
    t2_b0: dict[str, float]  # b0 signal of pure gm, wm, csf, core

    def summary(self, wml_ml: float) -> dict[str, float]:
        """For truth.json: what was drawn, with the white-matter lesion volume as measured on the case's grid."""
        return {"atrophy": round(self.atrophy, 4), "ventricle_scale": round(self.ventricle_scale, 4),
                "wm_lesion_ml": round(wml_ml, 3)}


def _template_tissue(point: np.ndarray, half_mm: int = 0) -> tuple[float, float]:
    """(gm, wm) of the 1 mm template at an MNI point, averaged over the cube of half-width ``half_mm`` around it;
    (0, 0) outside the template."""
    gm, wm, affine = load_templates()
    ijk = np.round(np.linalg.solve(affine, np.append(point, 1.0))[:3]).astype(int)
    if np.any(ijk - half_mm < 0) or np.any(ijk + half_mm >= gm.shape):
        return 0.0, 0.0
    box = tuple(slice(int(i) - half_mm, int(i) + half_mm + 1) for i in ijk)
    return float(gm[box].mean()), float(wm[box].mean())


def _patches(target_ml: float, rng: np.random.Generator) -> tuple[Patch, ...]:
    """Patches in white matter (template WM > 0.8 at the centre) until their nominal volumes reach the target."""
    patches: list[Patch] = []
    total = 0.0
    tries = 0
    while total < target_ml and len(patches) < WML_MAX_PATCHES and tries < 50 * WML_MAX_PATCHES:
        tries += 1
        region = WML_REGIONS_MM[int(rng.integers(0, len(WML_REGIONS_MM)))]
        point = np.array([rng.uniform(*axis) for axis in region])
        point[0] *= -1.0 if rng.random() < 0.5 else 1.0
        a, b, c = (float(v) for v in rng.uniform(2.0, 6.5, size=3))
        if _template_tissue(point)[1] < 0.8:
            continue
        patches.append(Patch((float(point[0]), float(point[1]), float(point[2])), (a, b, c)))
        total += 4.0 / 3.0 * np.pi * a * b * c / 1000.0
    return tuple(patches)


def draw_variation(seed: int, t2_reference: dict[str, float]) -> Variation:
    """The case's variation, from its own stream (the same for any kind, space or modality of that seed)."""
    rng = stream(seed, VARIATION_STREAM)
    atrophy = 0.0 if rng.random() < 0.3 else float(rng.uniform(0.05, 0.5))
    ventricle_scale = 1.0 if rng.random() < 0.3 else float(rng.uniform(1.05, 1.6))
    wml_target = 0.0 if rng.random() < 0.35 else float(np.exp(rng.uniform(np.log(0.5), np.log(30.0))))
    wml_adc = float(rng.uniform(0.9e-3, 1.2e-3))
    wml_t2 = float(rng.uniform(1.8, 2.3))
    b_value = float(round(rng.uniform(900.0, 1100.0)))
    snr = float(rng.uniform(15.0, 40.0))
    wm_ratio, csf_ratio = rng.uniform(0.85, 1.15, size=2)
    t2 = {"gm": t2_reference["gm"], "wm": t2_reference["wm"] * float(wm_ratio),
          "csf": t2_reference["csf"] * float(csf_ratio), "core": t2_reference["core"]}
    patches = _patches(wml_target, rng)  # last: its number of draws varies
    return Variation(atrophy, ventricle_scale, wml_target, patches, wml_adc, wml_t2, b_value, snr, t2)


def _box(world: np.ndarray, box: tuple[tuple[float, float], ...]) -> np.ndarray:
    inside = np.ones(world.shape[:-1], dtype=bool)
    for axis, (lo, hi) in enumerate(box):
        inside &= (world[..., axis] > lo) & (world[..., axis] < hi)
    return inside


def _enlarged_ventricles(anat: Anatomy, scale: float) -> np.ndarray:
    """CSF fraction the ventricles would add when scaled by ``scale`` about their centroid (0 where they do not)."""
    candidates = (anat.csf > 0.4) & _box(anat.world, VENTRICLE_BOX_MM) & anat.envelope
    labels, n = ndimage.label(candidates)
    if n == 0:
        return np.zeros_like(anat.csf)
    sizes = np.bincount(labels.ravel())[1:]
    ventricles = labels == 1 + int(np.argmax(sizes))
    fraction = np.where(ventricles, anat.csf, 0.0).astype(np.float32)
    centre = np.array(ndimage.center_of_mass(fraction))
    # Scaling about a point in mm is the same scaling about that point's index (the grid is affine): work on the
    # box the enlarged ventricles can reach only.
    idx = np.argwhere(ventricles)
    lo = np.floor(centre + (idx.min(axis=0) - centre) * scale - 2).astype(int).clip(0)
    hi = np.minimum(np.ceil(centre + (idx.max(axis=0) - centre) * scale + 3).astype(int), anat.csf.shape)
    offset = centre * (1.0 - 1.0 / scale) + lo / scale
    sub = ndimage.affine_transform(fraction, np.full(3, 1.0 / scale), offset, output_shape=tuple(hi - lo), order=1)
    grown = np.zeros_like(anat.csf)
    grown[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = sub
    return np.where(anat.envelope, np.clip(grown - anat.csf, 0.0, None), 0.0).astype(np.float32)


def _patch_mask(anat: Anatomy, patches: tuple[Patch, ...]) -> np.ndarray:
    """Voxels whose centre lies in a patch, each patch evaluated on the index box around it only."""
    mask = np.zeros(anat.gm.shape, dtype=bool)
    to_index = np.linalg.inv(anat.affine)
    sizes = voxel_sizes(anat.affine)
    shape = np.array(mask.shape)
    for patch in patches:
        centre = to_index @ np.append(patch.centre, 1.0)
        reach = max(patch.radii) / sizes + 1.5
        lo = np.floor(centre[:3] - reach).astype(int).clip(0, shape)
        hi = np.ceil(centre[:3] + reach + 1).astype(int).clip(0, shape)
        if np.any(hi <= lo):
            continue
        box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        d = (anat.world[box] - np.array(patch.centre, np.float32)) / np.array(patch.radii, np.float32)
        mask[box] |= (d * d).sum(axis=-1) < 1.0
    return mask


def vary_anatomy(anat: Anatomy, variation: Variation) -> tuple[Anatomy, np.ndarray]:
    """The case's anatomy on the diffusion grid (a new :class:`Anatomy`; the cached one is untouched) and its
    white-matter lesion mask. Tissue fractions still sum to 1 inside the envelope, which does not move."""
    gm, wm, csf = anat.gm.copy(), anat.wm.copy(), anat.csf.copy()
    if variation.ventricle_scale > 1.0:
        added = _enlarged_ventricles(anat, variation.ventricle_scale)
        tissue = np.maximum(gm + wm, 1e-6)
        keep = np.clip((tissue - added) / tissue, 0.0, 1.0)
        csf += tissue * (1.0 - keep)
        gm *= keep
        wm *= keep
    if variation.atrophy > 0.0:
        sigma = 1.5 / voxel_sizes(anat.affine)
        near_csf = ndimage.gaussian_filter(csf, sigma)
        lost = gm * (variation.atrophy * np.clip(2.0 * near_csf, 0.0, 1.0))
        lost = np.where(anat.envelope, lost, 0.0).astype(np.float32)
        gm -= lost
        csf += lost
    wml = _patch_mask(anat, variation.patches) & (wm > 0.3) & anat.envelope
    return replace(anat, gm=gm.astype(np.float32), wm=wm.astype(np.float32), csf=csf.astype(np.float32)), wml
