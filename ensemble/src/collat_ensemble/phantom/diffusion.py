"""The phantom's diffusion images: ADC and DWI from the tissue fractions, the haemodynamics and the lesions.

Signal: DWI = b0 exp(-b ADC), b0 the T2-weighted signal of the voxel's tissue mix. The true core is what SPEC
section 4 measures, on the noiseless ADC: partial volume with CSF lifts border voxels above the threshold, exactly
as on a scanner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collat_contract.clinical import CORE_ADC_THRESHOLD

from .anatomy import Anatomy
from .physiology import TMAX_THRESHOLD_S, Haemodynamics
from .variation import Variation

# Diffusion (mm^2/s) and T2-weighted b=0 signal (version 4 jitters the b0's ratios per case: variation.py).
ADC = {"gm": 0.80e-3, "wm": 0.70e-3, "csf": 3.0e-3, "core": 0.45e-3}
T2_S0 = {"gm": 1000.0, "wm": 800.0, "csf": 2000.0, "core": 1150.0}
B_VALUE = 1000.0  # the nominal b-value; each case draws its own (variation.py)
# Tissue whose flow is low enough to delay it beyond Tmax 6 s but that is not yet core loses some of its water
# mobility before the ADC reaches the core threshold (the intermediate ADC of penumbral tissue that diffusion-
# perfusion studies describe). The phantom gives it a 6 % ADC decline, ramping in over Tmax 5.5-6.5 s, so that the
# hypoperfusion the U-Net is asked for is visible on diffusion imaging, as the study's premise needs (why version 3
# added it: docs/training.md). 6 % keeps white matter (0.70e-3 -> 0.66e-3 mm^2/s) clear of the 0.62e-3 core threshold.
OLIGAEMIC_ADC_DECLINE = 0.06
OLIGAEMIC_RAMP_S = (TMAX_THRESHOLD_S - 0.5, TMAX_THRESHOLD_S + 0.5)


def core_eligible(anat: Anatomy) -> np.ndarray:
    """Voxels that measure as core when an acute core covers them: brain whose core ADC (tissue at the core value,
    CSF at its own) stays below the threshold. Computed as :func:`diffusion_images` does, so the two agree."""
    core_adc = anat.tissue * ADC["core"] + anat.csf * ADC["csf"]
    return anat.envelope & (anat.tissue > 0.3) & (core_adc < CORE_ADC_THRESHOLD)


@dataclass(frozen=True)
class OldTissue:
    """An old infarct on the diffusion grid: how much of each voxel's tissue it holds, and what that tissue is."""

    weight: np.ndarray  # 0..1
    adc: float
    b0: float


@dataclass(frozen=True)
class DiffusionImages:
    dwi: np.ndarray
    adc: np.ndarray
    core: np.ndarray  # the true core
    lesion: np.ndarray  # Tmax > 6 s in the brain, united with the core
    tmax6: np.ndarray  # Tmax > 6 s in the brain


def diffusion_images(anat: Anatomy, haemo: Haemodynamics, variation: Variation, wml: np.ndarray,
                     old: OldTissue | None, rng: np.random.Generator, bias: np.ndarray | None) -> DiffusionImages:
    """ADC and DWI with their truth. Draws from ``rng`` exactly one ADC-noise field and one Rician pair of the grid's
    size, as versions 1-3 did, so the main stream stays where it was for what follows (NIHSS, age)."""
    t2 = variation.t2_b0
    brain = anat.tissue > 0.3
    low, high = OLIGAEMIC_RAMP_S
    decline = OLIGAEMIC_ADC_DECLINE * np.clip((haemo.delay - low) / (high - low), 0.0, 1.0)
    lesioned_wm = np.where(wml, anat.wm, 0.0).astype(np.float32)
    normal_wm = anat.wm - lesioned_wm
    tissue_adc = anat.gm * ADC["gm"] + normal_wm * ADC["wm"] + lesioned_wm * variation.wml_adc
    tissue_b0 = anat.gm * t2["gm"] + normal_wm * t2["wm"] + lesioned_wm * (t2["wm"] * variation.wml_t2_factor)
    if old is not None:  # its tissue is gliosis and fluid: CSF-like diffusion, long T2
        w = old.weight
        tissue_adc = (1.0 - w) * tissue_adc + w * anat.tissue * old.adc
        tissue_b0 = (1.0 - w) * tissue_b0 + w * anat.tissue * old.b0
    adc = tissue_adc * (1.0 - decline) + anat.csf * ADC["csf"]
    b0 = tissue_b0 + anat.csf * t2["csf"]
    adc = np.where(haemo.core, anat.tissue * ADC["core"] + anat.csf * ADC["csf"], adc)
    b0 = np.where(haemo.core, anat.tissue * t2["core"] + anat.csf * t2["csf"], b0)
    core = anat.envelope & (adc < CORE_ADC_THRESHOLD)
    tmax6 = (haemo.delay > TMAX_THRESHOLD_S) & brain
    lesion = tmax6 | core
    adc = (adc * (1.0 + rng.normal(0.0, 0.03, size=adc.shape))).astype(np.float32)
    adc = np.where(anat.envelope, np.clip(adc, 0.0, None), 0.0).astype(np.float32)
    dwi = np.where(anat.envelope, b0 * np.exp(-variation.b_value * adc), 0.0)
    if bias is not None:  # the coil's field scales both b-values alike: the ADC does not see it
        dwi = dwi * bias
    dwi = rician(dwi.astype(np.float32), float(dwi[brain].mean()) / variation.snr, rng).astype(np.float32)
    return DiffusionImages(dwi, adc, core, lesion, tmax6)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of SD ``sigma`` (in place on the draws, for speed)."""
    n1 = rng.standard_normal(signal.shape, dtype=np.float32)
    n2 = rng.standard_normal(signal.shape, dtype=np.float32)
    n1 *= sigma
    n2 *= sigma
    n1 += signal
    return np.sqrt(n1 * n1 + n2 * n2)
