"""Property-based tests with an oracle: whatever shape, spacing, orientation and dtype arrive, an input with a
known defect is refused for that defect (by name), and an input with none is accepted and comes out right.

Each example draws a valid input and then at most one defect; the oracle is the defect drawn, so a
preprocessing that let bad input through, or refused good input, fails here. Valid perfusion series have at
least as many slices as the network grid: with fewer (one or two), erosion empties the brain mask and the
series is refused for that (the scanner-DICOM issue refuses them as perfusion by name).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collat_ensemble.errors import InputValidationError
from collat_ensemble.geometry import reorient_from_ras, reorient_to_ras
from collat_ensemble.phantom import generate_case
from collat_ensemble.preprocess import prepare_diffusion, prepare_perfusion
from collat_ensemble.registration import registration_error_mm

DTYPES = st.sampled_from([np.int16, np.int32, np.float32, np.float64])
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def affines(draw) -> np.ndarray:
    """Any axis permutation and flips, positive spacings from 0.5 to 8 mm, a rotation about z up to 0.3 rad."""
    perm = draw(st.permutations([0, 1, 2]))
    flips = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    spacing = draw(st.lists(st.floats(0.5, 8.0), min_size=3, max_size=3))
    a = np.zeros((4, 4))
    for stored, world in enumerate(perm):
        a[world, stored] = (-1 if flips[stored] else 1) * spacing[stored]
    angle = draw(st.floats(-0.3, 0.3))
    c, s = np.cos(angle), np.sin(angle)
    a[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ a[:3, :3]
    a[:3, 3] = draw(st.lists(st.floats(-200, 200), min_size=3, max_size=3))
    a[3, 3] = 1.0
    return a


PERFUSION_DEFECTS = {None: None, "few_frames": "too few frames", "slow_frames": "frame interval",
                     "fast_frames": "frame interval", "constant": "constant", "nan": "NaN",
                     "singular": "singular", "not_4d": "must be 4D", "few_slices": "too few slices",
                     "no_bolus": "no contrast bolus"}


def head_series(shape: tuple[int, int, int, int], rng: np.random.Generator, bolus: bool = True) -> np.ndarray:
    """A bright in-plane disk through every slice over a dim background, noise in every frame: always a brain;
    with ``bolus``, the disk enhances by 40 % over a few frames (a DCE first pass)."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    disk = (x - (shape[0] - 1) / 2) ** 2 + (y - (shape[1] - 1) / 2) ** 2 <= (min(shape[:2]) / 2.5) ** 2
    t = np.arange(shape[3])
    enhancement = 0.4 * np.exp(-0.5 * ((t - shape[3] / 2) / 2.0) ** 2) if bolus else np.zeros(shape[3])
    base = 100.0 + 180.0 * disk[:, :, None, None] * (1.0 + enhancement) - 100.0 * disk[:, :, None, None]
    return base + rng.integers(0, 20, size=shape)


def covering(affine: np.ndarray, shape: tuple[int, ...], mm: float = 31.0) -> np.ndarray:
    """``affine`` with its voxels stretched where needed so that every axis of ``shape`` spans ``mm``."""
    out = affine.copy()
    for axis in range(3):
        size = float(np.linalg.norm(out[:3, axis]))
        out[:3, axis] *= max(1.0, mm / (shape[axis] * size))
    return out


@SETTINGS
@given(shape=st.tuples(st.integers(6, 12), st.integers(6, 12), st.integers(4, 8), st.integers(20, 40)),
       affine=affines(), dtype=DTYPES, dt=st.floats(0.05, 30.0), seed=st.integers(0, 2 ** 16),
       defect=st.sampled_from(list(PERFUSION_DEFECTS)))
def test_prepare_perfusion_refuses_each_defect_by_name_and_accepts_the_rest(shape, affine, dtype, dt, seed, defect):
    rng = np.random.default_rng(seed)
    if defect == "few_frames":
        shape = (*shape[:3], int(rng.integers(1, 20)))
    if defect == "few_slices":
        shape = (*shape[:2], int(rng.integers(1, 4)), shape[3])
    affine = covering(affine, shape)
    data = head_series(shape, rng, bolus=defect != "no_bolus")
    if defect == "constant":
        data = np.full(shape, 7.0)
    if defect == "nan":
        data = data.astype(np.float32)
        data[tuple(int(rng.integers(0, n)) for n in shape)] = np.nan
        dtype = np.float32
    if defect == "not_4d":
        data = data[..., 0]
    if defect == "singular":
        affine = affine.copy()
        affine[:3, int(rng.integers(0, 3))] = 0.0
    dt = {"slow_frames": 31.0 + dt, "fast_frames": dt / 1000.0}.get(defect, dt)
    try:
        out = prepare_perfusion(data.astype(dtype), affine, dt, frames=20, frame_interval=1.6, slices=4,
                                height=32, width=32)
    except InputValidationError as exc:
        assert defect is not None, f"a valid series was refused: {exc}"
        assert PERFUSION_DEFECTS[defect] in str(exc), f"{defect} refused for another reason: {exc}"
        return
    assert defect is None, f"a series with the defect {defect!r} was accepted"
    assert out.network_input.shape == (20, 4, 32, 32) and out.mask.shape == (4, 32, 32) and out.mask.any()
    assert np.all(np.isfinite(out.network_input))
    assert out.network_input.min() >= -0.9 - 1e-6 and out.network_input.max() <= 0.9 + 1e-6
    np.testing.assert_array_equal(out.network_input[:, ~out.mask], -0.9)  # nothing outside the brain
    assert out.grid.input_shape == shape[:3]


DIFFUSION_DEFECTS = {None: None, "nihss": "nihss must be an integer", "side": "side must be", "nan": "NaN",
                     "grids": "do not share a grid", "affines": "different affines", "empty": "empty",
                     "not_a_brain": "could not be registered"}


@lru_cache(maxsize=1)
def mni_case():
    """A phantom DWI/ADC in MNI space: the valid input every example starts from (stored in another axis order
    and direction each time, which must change nothing)."""
    return generate_case(303, strength=2, side="right")


def reoriented(data: np.ndarray, affine: np.ndarray, perm: list[int], flips: list[bool]) -> tuple:
    """The same image stored in another axis order and direction (every voxel keeps its world position)."""
    a = affine.copy()
    for axis, flip in enumerate(flips):
        if flip:
            data = np.flip(data, axis)
            a[:, 3] += a[:, axis] * (data.shape[axis] - 1)
            a[:, axis] *= -1
    return np.ascontiguousarray(np.transpose(data, perm)), np.concatenate([a[:, perm], a[:, 3:]], axis=1)


@pytest.mark.slow
@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(perm=st.permutations([0, 1, 2]), flips=st.lists(st.booleans(), min_size=3, max_size=3), dtype=DTYPES,
       seed=st.integers(0, 2 ** 16), side=st.sampled_from(["left", "right", "bilateral", "unknown", None]),
       micro_units=st.booleans(), defect=st.sampled_from(list(DIFFUSION_DEFECTS)))
def test_prepare_diffusion_refuses_each_defect_by_name_and_accepts_the_rest(perm, flips, dtype, seed, side,
                                                                            micro_units, defect):
    rng, case = np.random.default_rng(seed), mni_case()
    dwi, adc = case.dwi.astype(np.float64), case.adc * (1e6 if micro_units else 1.0)
    if defect == "not_a_brain":
        dwi = rng.uniform(100, 1000, size=dwi.shape)
    dwi, stored = reoriented(dwi, case.diffusion_affine, perm, flips)
    adc, _ = reoriented(adc, case.diffusion_affine, perm, flips)
    adc_affine, nihss = stored, int(rng.integers(0, 43))
    if defect == "nihss":
        nihss = int(rng.choice([-1, 43, 100]))
    if defect == "side":
        side = "up"
    if defect == "nan":
        adc[tuple(int(rng.integers(0, n)) for n in adc.shape)] = np.nan
    if defect == "grids":
        adc = adc[:-1]
    if defect == "affines":
        adc_affine = stored.copy()
        adc_affine[:3, 3] += 10.0
    if defect == "empty":
        dwi = np.zeros_like(dwi)
    try:
        out = prepare_diffusion(dwi.astype(dtype), adc.astype(np.float32), stored, nihss=nihss, side=side,
                                adc_affine=adc_affine)
    except InputValidationError as exc:
        assert defect is not None, f"a valid DWI/ADC was refused: {exc}"
        assert DIFFUSION_DEFECTS[defect] in str(exc), f"{defect} refused for another reason: {exc}"
        return
    assert defect is None, f"a DWI/ADC with the defect {defect!r} was accepted"
    # Any storage order of an MNI image is still MNI space: recognised as such, or (an atrophied brain, phantom
    # version 4, matches the template's contrast less well) registered to within a millimetre of it.
    assert out.registration.method == "verified_mni" or registration_error_mm(out.registration.native_to_mni,
                                                                             np.eye(4)) < 1.0
    assert out.slabs.shape == (12, 4, 16, 128, 128) and np.all(np.isfinite(out.slabs))
    assert out.nihss_scaled == nihss / 21.0
    assert out.adc_units == ("1e-6 mm2/s" if micro_units else "mm2/s")
    if side in ("left", "right", "bilateral"):
        assert out.side == side and not out.side_inferred
    else:
        assert out.side == "right" and out.side_inferred  # the phantom's stroke, found from its core
    assert out.grid.input_shape == dwi.shape


@SETTINGS
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)), affine=affines())
def test_reorientation_round_trips_exactly(shape, affine):
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    ras, ras_affine, orientation = reorient_to_ras(data, affine)
    np.testing.assert_array_equal(reorient_from_ras(np.asarray(ras), orientation), data)
    # The RAS affine maps each reoriented voxel to the same world point as the original voxel.
    index = np.array([shape[0] - 1, 0, shape[2] - 1, 1.0])
    world = affine @ index
    ras_index = np.linalg.solve(ras_affine, world)
    np.testing.assert_allclose(ras_index, np.rint(ras_index), atol=1e-6)
    assert np.asarray(ras)[tuple(np.rint(ras_index[:3]).astype(int))] == data[tuple(index[:3].astype(int))]
