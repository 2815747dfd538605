"""A native-space DWI to MNI space: an affine registration to the template, and how far to trust it.

The U-Net was trained on DWIs normalized to MNI space; hospitals send them in the patient's
own pose. :func:`normalize_to_mni` finds the affine map from the scan's RAS millimetres to MNI
millimetres (SimpleITK: Mattes mutual information, a moments initializer, rigid then affine,
coarse to fine on a downsampled copy, so it takes seconds on two cores). The scan's brain is
cut out first (:func:`brain_outline`): most clinical DWIs keep scalp and skull, which the
template has not, and mutual information would otherwise fit the head's outline to the brain's
(measured on a real unstripped scan: a head registered 12 % too small). An input already in MNI
space is recognised by how well it matches the template where it stands, and kept as it is:
re-registering a normalized image can only add error.

How far to trust the result is measured without the image's contrast, which differs from
scanner to scanner: the registered brain outline must overlap the template's brain
(:func:`outline_overlap`, Dice). Real registered scans reach 0.88-0.94, phantoms 0.96.

Everything is expressed as 4x4 matrices in RAS mm, so the rest of the pipeline needs nothing
but affines: a scan whose voxels map to native mm by ``A`` maps to MNI mm by
``native_to_mni @ A``; resampling with that affine puts it on any MNI grid, and resampling from
an MNI grid onto ``native_to_mni @ A`` brings a result back onto the scan's own voxels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from collat_contract import metrics

from .errors import InputValidationError
from .geometry import resample, voxel_sizes
from .template import Template, default_template

# An input is taken as already normalized when, placed by its own affine, it matches the template this well
# (rank correlation inside the template brain, 4 mm blocks): MNI-space phantoms score 0.80-0.88 (a 75 mL bright
# core lowest), the same images shifted by 2 mm 0.63-0.70, by 4 mm 0.33-0.36.
MNI_VERIFIED_SIMILARITY = 0.75
# Unusable inputs, refused: a rank correlation with the template this low after registration means no brain
# contrast at all (noise scores 0.00; real registered scans 0.2-0.5, phantoms 0.8-0.95), and an outline overlap
# this low means no brain-shaped object was found.
FAILED_CONTRAST_SIMILARITY = 0.1
FAILED_OUTLINE_OVERLAP = 0.5
# The outermost slices of a scan are often empty, wrapped or eroded (the phantom's are): scores leave 3 out.
EDGE_SLICES = 3
REGISTRATION_VOXEL_MM = 4.0  # both images are compared at this resolution: enough for 12 parameters
MAX_ITERATIONS = 100  # per level and stage


@dataclass(frozen=True)
class Registration:
    native_to_mni: np.ndarray  # 4x4, RAS mm -> MNI RAS mm
    method: str  # "verified_mni" | "affine"
    similarity: float  # Dice of the registered brain outline with the template brain, over the scan's field of view
    contrast_similarity: float  # rank correlation with the template inside its brain (0 for a non-brain image)
    template_coverage: float  # fraction of the template brain inside the scan's field of view
    scale: float  # cube root of the determinant: the head's size relative to the template
    seconds: float

    def as_dict(self) -> metrics.Registration:
        """The METRICS document's ``registration`` (rounded for reading)."""
        return metrics.Registration(
            method=self.method, similarity=round(self.similarity, 4),
            contrast_similarity=round(self.contrast_similarity, 4),
            template_coverage=round(self.template_coverage, 4), scale=round(self.scale, 4),
            seconds=round(self.seconds, 3),
            native_to_mni=[[round(float(v), 6) for v in row] for row in self.native_to_mni])


def block_average(data: np.ndarray, affine: np.ndarray, voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Means of non-overlapping blocks of about ``voxel_mm`` along each stored axis (anti-aliased and 20 times
    smaller for a clinical DWI), and the affine of the block centres; a partial last block is dropped."""
    factors = np.maximum(1, np.round(voxel_mm / voxel_sizes(affine))).astype(int)
    n = np.maximum(np.array(data.shape[:3]) // factors, 1)
    cropped = np.asarray(data, dtype=np.float32)[: n[0] * factors[0], : n[1] * factors[1], : n[2] * factors[2]]
    blocks = cropped.reshape(n[0], factors[0], n[1], factors[1], n[2], factors[2]).mean(axis=(1, 3, 5))
    step = np.eye(4)
    step[:3, :3] = np.diag(factors)
    step[:3, 3] = (factors - 1) / 2.0
    return np.ascontiguousarray(blocks, dtype=np.float32), np.asarray(affine, dtype=np.float64) @ step


def similarity(image: np.ndarray, image_to_mni: np.ndarray, template: Template) -> float:
    """Rank correlation between the template and the image placed in MNI space, over the template brain that the
    image covers, both at the registration's resolution (noise averages out there)."""
    small, small_to_mni = block_average(image, image_to_mni, REGISTRATION_VOXEL_MM)
    fixed, fixed_affine = _template_blocks(template)
    placed = resample(small, small_to_mni, fixed_affine, fixed.shape)
    inside = _template_brain_blocks(template) & _inside_fov(
        image.shape, image_to_mni, fixed_affine, fixed.shape, margin=EDGE_SLICES)
    if inside.sum() < 100:
        return 0.0
    return _rank_correlation(placed[inside], fixed[inside])


def _template_blocks(template: Template) -> tuple[np.ndarray, np.ndarray]:
    return template.derived("blocks", lambda: block_average(template.dwi, template.affine, REGISTRATION_VOXEL_MM))


def _template_brain_blocks(template: Template) -> np.ndarray:
    return template.derived("brain_blocks", lambda: block_average(
        template.brain.astype(np.float32), template.affine, REGISTRATION_VOXEL_MM)[0] >= 0.5)


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's correlation: a bright infarct or a coil's bias field changes values, not the order of tissues."""
    ra, rb = np.argsort(np.argsort(a)).astype(np.float64), np.argsort(np.argsort(b)).astype(np.float64)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def _inside_fov(shape: tuple[int, ...], image_to_mni: np.ndarray, grid_affine: np.ndarray,
                grid_shape: tuple[int, ...], margin: float = 1.0) -> np.ndarray:
    """Voxels of an MNI grid whose centres fall inside the image's field of view, ``margin`` voxels in from its
    edge."""
    # Grid index -> image index is one affine map; each image axis's coordinate is a sum of three 1D terms,
    # broadcast over the grid one axis at a time (no (3, N) arrays of indices and coordinates).
    grid_to_image = np.linalg.inv(np.asarray(image_to_mni, dtype=np.float64)) @ np.asarray(grid_affine, np.float64)
    axes = [np.arange(n, dtype=np.float64) for n in grid_shape[:3]]
    inside = np.ones(tuple(grid_shape[:3]), dtype=bool)
    for axis in range(3):
        row = grid_to_image[axis]
        coordinate = (row[0] * axes[0])[:, None, None] + (row[1] * axes[1])[None, :, None] \
            + (row[2] * axes[2] + row[3])[None, None, :]
        extent = float(shape[axis])
        inset = min(margin, (extent - 1.0) / 4.0)  # a scan of a few slices keeps its middle
        inside &= (coordinate >= inset - 0.5) & (coordinate <= extent - 0.5 - inset)
    return inside


def template_coverage(shape: tuple[int, ...], image_to_mni: np.ndarray, template: Template) -> float:
    """Fraction of the template's brain voxels that fall inside the image's field of view."""
    inside = _inside_fov(shape, image_to_mni, template.affine, template.dwi.shape, margin=0.0)
    return float((inside & template.brain).sum() / max(int(template.brain.sum()), 1))


def _sitk_image(data: np.ndarray, affine: np.ndarray):
    """A SimpleITK image whose physical space is the affine's RAS mm (ITK does not care that it is not LPS)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data.astype(np.float32), (2, 1, 0))))
    spacing = voxel_sizes(affine)
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in affine[:3, 3]])
    image.SetDirection([float(v) for v in (affine[:3, :3] / spacing).ravel()])
    return image


def _matrix(transform) -> np.ndarray:
    """A SimpleITK matrix-offset transform (fixed -> moving points: y = A (x - c) + c + t) as a 4x4 matrix."""
    m = np.eye(4)
    linear = np.array(transform.GetMatrix()).reshape(3, 3)
    centre, translation = np.array(transform.GetCenter()), np.array(transform.GetTranslation())
    m[:3, :3] = linear
    m[:3, 3] = translation + centre - linear @ centre
    return m


def _isotropic(data: np.ndarray, affine: np.ndarray, voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The image on a grid of ``voxel_mm`` cubes over the same field of view, smoothed first (no aliasing): the
    optimizer then sees the same resolution along every axis, whatever the slice thickness."""
    from scipy import ndimage

    from .geometry import fit_grid

    sizes = voxel_sizes(affine)
    sigma = np.maximum(voxel_mm / sizes - 1.0, 0.0) / 2.0
    smooth = ndimage.gaussian_filter(np.asarray(data, dtype=np.float32), sigma) if sigma.any() else data
    shape = tuple(max(2, int(round(n * s / voxel_mm))) for n, s in zip(data.shape[:3], sizes, strict=True))
    new_affine = fit_grid(affine, data.shape[:3], shape)
    return resample(smooth, affine, new_affine, shape), new_affine


def register_affine(image: np.ndarray, affine: np.ndarray, template: Template) -> np.ndarray:
    """The 4x4 map from the image's RAS mm to MNI mm: moments start, rigid (Euler) then affine, each coarse to
    fine (8 then 4 mm), Mattes mutual information on isotropic 4 mm copies of both images."""
    import SimpleITK as sitk

    moving_data, moving_affine = _isotropic(image, affine, REGISTRATION_VOXEL_MM)
    fixed_data, fixed_affine = template.derived(
        "isotropic", lambda: _isotropic(template.dwi, template.affine, REGISTRATION_VOXEL_MM))
    fixed, moving = _sitk_image(fixed_data, fixed_affine), _sitk_image(moving_data, moving_affine)
    brain = template.derived("isotropic_brain", lambda: _isotropic(
        template.brain.astype(np.float32), template.affine, REGISTRATION_VOXEL_MM)[0])
    # The metric looks at the template brain and 4 mm around it: the rest of the box holds nothing to match.
    mask = sitk.BinaryDilate(sitk.Cast(_sitk_image(brain, fixed_affine) > 0.5, sitk.sitkUInt8), [1, 1, 1])

    def run(transform):
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        method.SetMetricFixedMask(mask)
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(0.25, 42)  # a fixed seed: the same input always registers the same way
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                        numberOfIterations=MAX_ITERATIONS,
                                                        gradientMagnitudeTolerance=1e-6)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetShrinkFactorsPerLevel([2, 1])
        method.SetSmoothingSigmasPerLevel([1.0, 0.0])
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        method.SetInitialTransform(transform, inPlace=True)
        method.Execute(fixed, moving)

    rigid = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS))
    run(rigid)
    full = sitk.AffineTransform(3)
    full.SetCenter(rigid.GetCenter())
    full.SetMatrix(rigid.GetMatrix())
    full.SetTranslation(rigid.GetTranslation())
    run(full)
    return np.linalg.inv(_matrix(full))  # ITK maps fixed (MNI) points to moving (scan) points


def brain_outline(image: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The brain of a b=1000 DWI, without scalp, skull or neck: a signal threshold, an opening with a 5 mm ball
    (it cuts the thin bridges of signal between scalp and brain), the largest piece, grown back by the same ball
    inside the signal, holes filled slice by slice (ventricles and a dark core stay inside)."""
    from scipy import ndimage

    positive = image[image > 0]
    signal = image > 0.2 * float(np.percentile(positive, 99)) if positive.size else np.zeros(image.shape, bool)
    sizes = voxel_sizes(affine)
    radius = np.maximum(np.round(5.0 / sizes).astype(int), 1)
    offsets = np.indices(tuple(2 * radius + 1)).astype(np.float64) - radius[:, None, None, None]
    ball = ((offsets * sizes[:, None, None, None]) ** 2).sum(axis=0) <= max(25.0, float(sizes.max()) ** 2)
    labels, count = ndimage.label(ndimage.binary_opening(signal, ball))
    if count == 0:
        return signal
    largest = labels == (int(np.argmax(np.bincount(labels.ravel())[1:])) + 1)
    grown = ndimage.binary_dilation(largest, ball) & signal
    return np.stack([ndimage.binary_fill_holes(grown[:, :, k]) for k in range(grown.shape[2])], axis=2)


def outline_overlap(outline: np.ndarray, outline_to_mni: np.ndarray, template: Template) -> float:
    """Dice of a registered brain outline and the template brain (4 mm blocks), over the template voxels the scan
    covers."""
    fixed, fixed_affine = _template_blocks(template)
    placed = resample(outline.astype(np.float32), outline_to_mni, fixed_affine, fixed.shape) >= 0.5
    covered = _inside_fov(outline.shape, outline_to_mni, fixed_affine, fixed.shape, margin=1.0)
    a, b = placed & covered, _template_brain_blocks(template) & covered
    total = int(a.sum() + b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 0.0


def normalize_to_mni(image: np.ndarray, affine: np.ndarray, template: Template, what: str = "DWI") -> Registration:
    """Recognise an input already in MNI space, or register its brain; either way say how well it fits. ``what``
    names the image in errors (the perfusion series' baseline is registered the same way)."""
    start = time.perf_counter()
    image = np.asarray(image, dtype=np.float32)
    if not np.any(image > 0):
        raise InputValidationError(f"the {what} is empty (no positive signal)")
    small, small_affine = block_average(image, affine, REGISTRATION_VOXEL_MM)
    outline = brain_outline(small, small_affine)
    contrast = similarity(image, affine, template)
    if contrast >= MNI_VERIFIED_SIMILARITY:
        native_to_mni, method = np.eye(4), "verified_mni"
    else:
        # The matrix acts on millimetres: found on the outlined 4 mm copy, it holds for the full-resolution scan.
        native_to_mni, method = register_affine(small * outline, small_affine, template), "affine"
        contrast = similarity(image, native_to_mni @ affine, template)
    image_to_mni = native_to_mni @ affine
    overlap = outline_overlap(outline, native_to_mni @ small_affine, template)
    coverage = template_coverage(image.shape, image_to_mni, template)
    # A scan of a few slices cannot be judged this way: the coverage gate withholds its decisions instead.
    if coverage >= 0.5 and (contrast < FAILED_CONTRAST_SIMILARITY or overlap < FAILED_OUTLINE_OVERLAP):
        raise InputValidationError(
            f"the {what} could not be registered to the MNI brain template (brain overlap {overlap:.2f}, contrast "
            f"similarity {contrast:.2f}): is it a brain {what}?")
    scale = float(abs(np.linalg.det(native_to_mni[:3, :3])) ** (-1.0 / 3.0))
    return Registration(native_to_mni, method, overlap, contrast, coverage, scale, time.perf_counter() - start)


def registration_error_mm(native_to_mni: np.ndarray, true_mni_to_native: np.ndarray, template: Template | None = None,
                          ) -> float:
    """Mean distance (mm, in the scan's space) between where the estimate and the truth put the template's brain:
    how the phantom's known pose scores a registration."""
    template = template or default_template()
    brain = np.argwhere(template.brain).astype(np.float64)
    points = np.c_[brain @ template.affine[:3, :3].T + template.affine[:3, 3], np.ones(len(brain))]
    estimated = points @ np.linalg.inv(native_to_mni).T
    true = points @ np.asarray(true_mni_to_native, dtype=np.float64).T
    return float(np.linalg.norm(estimated[:, :3] - true[:, :3], axis=1).mean())
