"""Each artefact rule of the ADC core removes what it is there for, and nothing of a true infarct."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from collat_ensemble.adc_core import measure_core

VOXEL = np.array([1.0, 1.0, 1.0])  # 1 mm: 1000 voxels = 1 mL


@pytest.fixture()
def scan():
    """A 60 mm cube of normal parenchyma (ADC 0.8e-3, DWI 400) with a bright 2 mL infarct (ADC 0.45e-3, DWI 800)."""
    rng = np.random.default_rng(0)
    shape = (60, 60, 60)
    adc = np.full(shape, 0.8e-3) * (1 + rng.normal(0, 0.02, shape))
    dwi = np.full(shape, 400.0) * (1 + rng.normal(0, 0.02, shape))
    infarct = np.zeros(shape, bool)
    infarct[20:30, 20:30, 20:40] = True
    adc[infarct], dwi[infarct] = 0.45e-3, 800.0
    return dwi.astype(np.float32), adc.astype(np.float32), np.ones(shape, bool), infarct


def test_a_true_infarct_is_kept_whole(scan):
    dwi, adc, brain, infarct = scan
    found = measure_core(dwi, adc, brain, VOXEL)
    assert abs(int(found.core.sum()) - int(infarct.sum())) <= 0.02 * infarct.sum()
    assert np.all(found.core <= infarct | np.roll(infarct, 1, 0) | np.roll(infarct, -1, 0))


def test_outside_the_brain_nothing_counts(scan):
    dwi, adc, brain, infarct = scan
    adc[:, :, 50:] = 0.0  # a scanner's zero-filled ADC outside the head
    outside = brain.copy()
    outside[:, :, 45:] = False
    found = measure_core(dwi, adc, outside, VOXEL)
    assert not found.core[:, :, 45:].any() and found.core[infarct].mean() > 0.95


def test_speckle_is_filtered_and_counted(scan):
    dwi, adc, brain, infarct = scan
    rng = np.random.default_rng(1)
    speckle = (rng.random(adc.shape) < 0.02) & ~infarct
    adc[speckle] = 0.55e-3
    dwi[speckle] = 800.0  # even bright: single voxels are noise
    found = measure_core(dwi, adc, brain, VOXEL)
    away = speckle & ~ndimage.binary_dilation(infarct)  # a speck touching the infarct joins its rim, fairly
    assert not (found.core & away).any()
    assert found.removed_ml["speckle_median_filter"] >= 0.9 * away.sum() / 1000.0


def test_implausibly_low_adc_is_an_artefact(scan):
    dwi, adc, brain, infarct = scan
    void = np.zeros_like(infarct)
    void[40:50, 40:50, 40:50] = True  # a 1 mL signal void: ADC 1e-4
    adc[void], dwi[void] = 1e-4, 900.0
    found = measure_core(dwi, adc, brain, VOXEL)
    assert not (found.core & void).any() and found.removed_ml["adc_below_200e-6"] >= 0.5


@pytest.mark.parametrize("dwi_value, rule", [
    (300.0, "dwi_not_bright"),  # susceptibility: low ADC under a dark DWI
    (480.0, "clusters_not_bright"),  # low ADC, only 1.2 times the tissue around it
])
def test_a_low_adc_region_that_is_not_bright_on_the_dwi_is_not_an_infarct(scan, dwi_value, rule):
    dwi, adc, brain, infarct = scan
    region = np.zeros_like(infarct)
    region[40:50, 40:50, 5:15] = True
    adc[region], dwi[region] = 0.5e-3, dwi_value
    found = measure_core(dwi, adc, brain, VOXEL)
    assert not (found.core & region).any() and found.removed_ml[rule] >= 0.5


def test_clusters_below_a_tenth_of_a_millilitre_are_dropped(scan):
    dwi, adc, brain, infarct = scan
    small = np.zeros_like(infarct)
    small[45:49, 45:49, 45:49] = True  # 64 voxels = 0.064 mL, bright and low: too small to count
    adc[small], dwi[small] = 0.45e-3, 800.0
    found = measure_core(dwi, adc, brain, VOXEL)
    assert not (found.core & small).any() and found.removed_ml["clusters_below_0.1ml"] > 0.0
    assert found.core[infarct].mean() > 0.95
