"""Real anatomy for the phantom: the MNI ICBM152 2009 grey/white-matter templates from the nilearn wheel.

The files are read from the installed package (no download; nilearn itself is not
imported, which would pull scikit-learn into every phantom run). They are 1 mm,
197x233x189, tissue probabilities stored as 0-255.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputValidationError
from ..geometry import resample, voxel_sizes

TEMPLATE_FILES = {
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def template_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputValidationError("the phantom needs the nilearn wheel for its MNI templates: "
                                   "pip install 'collat-ensemble[phantom]'")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@lru_cache(maxsize=1)
def load_templates() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gm, wm) probabilities in [0, 1] and their 1 mm affine."""
    import nibabel as nib

    images = {k: nib.load(str(template_dir() / f)) for k, f in TEMPLATE_FILES.items()}
    gm = np.asarray(images["gm"].dataobj, dtype=np.float32) / 255.0
    wm = np.asarray(images["wm"].dataobj, dtype=np.float32) / 255.0
    return gm, wm, images["gm"].affine.astype(np.float64)


@dataclass(frozen=True)
class Anatomy:
    """Tissue fractions on one grid, with the world coordinates of every voxel centre."""

    affine: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    envelope: np.ndarray  # intracranial region (brain + sulcal/ventricular CSF)
    world: np.ndarray  # (x, y, z, 3) mm

    @property
    def tissue(self) -> np.ndarray:
        return self.gm + self.wm


def world_coordinates(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1).astype(np.float64)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).astype(np.float32)


def _anatomy(affine_key: tuple[float, ...], shape: tuple[int, int, int]) -> Anatomy:
    affine = np.array(affine_key, dtype=np.float64).reshape(4, 4)
    gm1, wm1, a1 = load_templates()
    # Slices are thicker than 1 mm: average the template over the slab each voxel integrates.
    # (FWHM = voxel size; axes needing less than half a template voxel are left alone).
    sigma = np.maximum(voxel_sizes(affine) / 2.355 - 0.5, 0.0) / voxel_sizes(a1)
    sigma = np.where(sigma < 0.5, 0.0, sigma)
    if sigma.any():
        gm1, wm1 = ndimage.gaussian_filter(gm1, sigma), ndimage.gaussian_filter(wm1, sigma)
    gm = resample(gm1, a1, affine, shape)
    wm = resample(wm1, a1, affine, shape)
    brain = (gm + wm) > 0.3
    envelope = ndimage.binary_fill_holes(ndimage.binary_closing(brain, iterations=3))
    csf = np.where(envelope, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0).astype(np.float32)
    return Anatomy(affine, gm, wm, csf, envelope, world_coordinates(affine, shape))


@lru_cache(maxsize=8)
def _cached(affine_key: tuple[float, ...], shape: tuple[int, int, int]) -> Anatomy:
    return _anatomy(affine_key, shape)


def anatomy_on_grid(affine: np.ndarray, shape: tuple[int, int, int]) -> Anatomy:
    """Templates resampled to a grid; cached, because every case of a geometry shares them."""
    key = tuple(float(round(v, 6)) for v in np.asarray(affine, dtype=np.float64).ravel())
    return _cached(key, tuple(int(s) for s in shape))


def axial_grid(matrix: int, fov_mm: float, slices: int, slice_spacing_mm: float,
               centre_mm: tuple[float, float, float] = (0.0, -18.0, 14.0)) -> tuple[np.ndarray, tuple[int, int, int]]:
    """RAS affine and shape of an axial acquisition centred on the brain."""
    vox = fov_mm / matrix
    affine = np.diag([vox, vox, slice_spacing_mm, 1.0])
    shape = (matrix, matrix, slices)
    affine[:3, 3] = np.array(centre_mm) - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return affine, shape


def mni_2mm_grid() -> tuple[np.ndarray, tuple[int, int, int]]:
    """The MNI 2 mm grid the U-Net expects: 91x109 in-plane (MNI152 standard), 60 slices z = -44..74 mm."""
    affine = np.array([[2.0, 0, 0, -90.0], [0, 2.0, 0, -126.0], [0, 0, 2.0, -44.0], [0, 0, 0, 1.0]])
    return affine, (91, 109, 60)
