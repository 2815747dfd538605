"""The ischaemic core from an ADC map, measured on the scan's own grid, with the artefacts of real scans removed.

DEFUSE 3's threshold (``CORE_ADC_THRESHOLD``) applied bare to a clinical scan also counts voxels that are not
infarct, so the core is kept to (1) brain parenchyma, CSF out; (2) the threshold on a 3-voxel median of the ADC;
(3) ADC at or above ``ARTEFACT_ADC``; (4) voxels bright on the b=1000 DWI; (5) clusters visibly brighter than the
parenchyma around them; (6) face-connected clusters of at least ``MIN_CLUSTER_ML``. The mL each rule removed is
reported. Why each rule and its numbers: docs/diffusion-inputs.md ("The ADC core").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from collat_contract.clinical import CORE_ADC_THRESHOLD

CSF_ADC = 1.5e-3  # mm^2/s: free-water partial volume above it
ARTEFACT_ADC = 200e-6  # mm^2/s: below it, not tissue
MIN_CLUSTER_ML = 0.1
DWI_BRIGHTNESS = 1.0  # x the parenchyma's median b=1000 signal, per voxel
CLUSTER_BRIGHTNESS = 1.5  # x the surrounding parenchyma's median, per cluster
NEIGHBOURHOOD_MM = 15.0


@dataclass(frozen=True)
class CoreMeasurement:
    core: np.ndarray  # bool, on the grid of the inputs
    parenchyma: np.ndarray  # bool: the brain the core was looked for in (rule 1)
    removed_ml: dict[str, float]  # rule -> mL that the bare threshold inside the brain would have counted more

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.removed_ml.items()}


def parenchyma_mask(dwi: np.ndarray, adc: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Rule 1: the atlas brain, where the DWI has signal and the ADC is not free water."""
    brain = np.asarray(brain, dtype=bool)
    signal = dwi > 0.1 * float(np.percentile(dwi[brain], 99)) if brain.any() else np.zeros_like(brain)
    return brain & signal & (adc > 0) & (adc < CSF_ADC)


def filtered_adc(adc: np.ndarray, voxel_mm: np.ndarray) -> np.ndarray:
    """Rule 2's median: 3 voxels along axes finer than 3 mm, 1 along thicker ones (a 5 mm slice is not averaged)."""
    size = tuple(3 if v < 3.0 else 1 for v in np.asarray(voxel_mm, dtype=np.float64))
    return ndimage.median_filter(adc, size=size, mode="nearest")


def measure_core(dwi: np.ndarray, adc: np.ndarray, brain: np.ndarray, voxel_mm: np.ndarray) -> CoreMeasurement:
    """The core on the grid of ``dwi``/``adc`` (ADC in mm^2/s, ``voxel_mm`` its voxel size), inside ``brain`` (the
    atlas brain on that grid)."""
    voxel_ml = float(np.prod(voxel_mm)) / 1000.0
    dwi, adc = np.asarray(dwi, dtype=np.float32), np.asarray(adc, dtype=np.float32)
    parenchyma = parenchyma_mask(dwi, adc, brain)
    bare = parenchyma & (adc < CORE_ADC_THRESHOLD)
    raw_adc, adc = adc, filtered_adc(adc, voxel_mm)
    candidate = parenchyma & (adc < CORE_ADC_THRESHOLD)
    removed: dict[str, float] = {"speckle_median_filter": float((bare & ~candidate).sum()) * voxel_ml}
    artefact = candidate & (adc < ARTEFACT_ADC)
    removed["adc_below_200e-6"] = float(artefact.sum()) * voxel_ml
    candidate &= ~artefact
    if parenchyma.any():
        dark = candidate & (dwi < DWI_BRIGHTNESS * float(np.median(dwi[parenchyma])))
        removed["dwi_not_bright"] = float(dark.sum()) * voxel_ml
        candidate &= ~dark
    labels, count = ndimage.label(candidate, structure=ndimage.generate_binary_structure(3, 1))
    faint = np.zeros_like(candidate)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        margin = [int(np.ceil(NEIGHBOURHOOD_MM / v)) for v in voxel_mm]
        around = tuple(slice(max(b.start - m, 0), b.stop + m) for b, m in zip(box, margin, strict=True))
        cluster = labels[around] == index
        tissue = parenchyma[around] & ~candidate[around]
        if tissue.any() and dwi[around][cluster].mean() < CLUSTER_BRIGHTNESS * float(np.median(dwi[around][tissue])):
            faint[around] |= cluster
    removed["clusters_not_bright"] = float(faint.sum()) * voxel_ml
    candidate &= ~faint
    labels, count = ndimage.label(candidate, structure=ndimage.generate_binary_structure(3, 1))
    if count:
        sizes = np.bincount(labels.ravel())[1:] * voxel_ml
        small = np.isin(labels, np.nonzero(sizes < MIN_CLUSTER_ML)[0] + 1)
        removed["clusters_below_0.1ml"] = float(small.sum()) * voxel_ml
        candidate &= ~small
    else:
        removed["clusters_below_0.1ml"] = 0.0
    face = ndimage.generate_binary_structure(3, 1)
    rim = ndimage.binary_dilation(candidate, face) & bare & (raw_adc >= ARTEFACT_ADC)
    if parenchyma.any():
        rim &= dwi >= DWI_BRIGHTNESS * float(np.median(dwi[parenchyma]))
    removed["speckle_median_filter"] -= float((rim & ~candidate).sum()) * voxel_ml
    return CoreMeasurement(candidate | rim, parenchyma, removed)
