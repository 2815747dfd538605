"""Property-based tests: whatever shape, spacing, orientation and dtype arrive, the preprocessing either
works or raises the one documented error (InputValidationError), never anything else."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collat_ensemble.errors import InputValidationError
from collat_ensemble.geometry import reorient_from_ras, reorient_to_ras
from collat_ensemble.preprocess import MNI_2MM_AFFINE, prepare_diffusion, prepare_perfusion
from collat_ensemble.serving.diffusion import ClinicalInputs

DTYPES = st.sampled_from([np.uint8, np.int16, np.int32, np.float32, np.float64])
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def affines(draw) -> np.ndarray:
    """Any axis permutation and flips, positive spacings from 0.1 to 8 mm, sometimes a small rotation or a
    degenerate axis."""
    perm = draw(st.permutations([0, 1, 2]))
    flips = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    spacing = draw(st.lists(st.floats(0.1, 8.0), min_size=3, max_size=3))
    a = np.zeros((4, 4))
    for stored, world in enumerate(perm):
        a[world, stored] = (-1 if flips[stored] else 1) * spacing[stored]
    angle = draw(st.floats(-0.3, 0.3))
    c, s = np.cos(angle), np.sin(angle)
    a[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ a[:3, :3]
    if draw(st.integers(0, 9)) == 0:
        a[:3, draw(st.integers(0, 2))] = 0.0  # singular
    a[:3, 3] = draw(st.lists(st.floats(-200, 200), min_size=3, max_size=3))
    a[3, 3] = 1.0
    return a


@SETTINGS
@given(shape=st.tuples(st.integers(1, 10), st.integers(1, 10), st.integers(1, 6), st.integers(1, 30)),
       affine=affines(), dtype=DTYPES, dt=st.floats(0.01, 40.0), seed=st.integers(0, 2 ** 16),
       constant=st.booleans())
def test_prepare_perfusion_works_or_names_the_problem(shape, affine, dtype, dt, seed, constant):
    rng = np.random.default_rng(seed)
    data = np.full(shape, 7) if constant else rng.integers(0, 200, size=shape)
    try:
        out = prepare_perfusion(data.astype(dtype), affine, dt, frames=20, frame_interval=1.6, slices=4,
                                height=32, width=32)
    except InputValidationError as exc:
        assert str(exc)
        return
    assert out.network_input.shape == (20, 4, 32, 32)
    assert np.all(np.isfinite(out.network_input))
    assert out.network_input.min() >= -0.9 - 1e-6 and out.network_input.max() <= 0.9 + 1e-6


@SETTINGS
@given(shape=st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 30)), affine=affines(),
       dtype=DTYPES, seed=st.integers(0, 2 ** 16), side=st.sampled_from(["left", "right", "bilateral", "unknown"]),
       mni=st.booleans())
def test_prepare_diffusion_works_or_names_the_problem(shape, affine, dtype, seed, side, mni):
    rng = np.random.default_rng(seed)
    if mni:  # a field of view that covers MNI space, at a coarser grid
        shape, affine = (23, 28, 15), MNI_2MM_AFFINE @ np.diag([4.0, 4.0, 4.0, 1.0])
    dwi = rng.integers(0, 1000, size=shape).astype(dtype)
    adc = (rng.random(shape) * 2e-3).astype(np.float32)
    try:
        out = prepare_diffusion(dwi, adc, affine, nihss=int(rng.integers(0, 43)), side=side)
    except InputValidationError as exc:
        assert str(exc)
        return
    assert out.slabs.shape == (12, 4, 16, 128, 128) and np.all(np.isfinite(out.slabs))
    assert out.side in ("left", "right", "bilateral")


@SETTINGS
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)), affine=affines())
def test_reorientation_round_trips_exactly(shape, affine):
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    try:
        ras, ras_affine, orientation = reorient_to_ras(data, affine)
    except InputValidationError:
        return
    np.testing.assert_array_equal(reorient_from_ras(np.asarray(ras), orientation), data)
    # The RAS affine maps each reoriented voxel to the same world point as the original voxel.
    index = np.array([shape[0] - 1, 0, shape[2] - 1, 1.0])
    world = affine @ index
    ras_index = np.linalg.solve(ras_affine, world)
    np.testing.assert_allclose(ras_index, np.rint(ras_index), atol=1e-6)
    assert np.asarray(ras)[tuple(np.rint(ras_index[:3]).astype(int))] == data[tuple(index[:3].astype(int))]


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.none(), st.integers(-100, 100), st.floats(allow_nan=True), st.text(max_size=5),
                       st.booleans(), st.lists(st.integers(), max_size=2)),
       field=st.sampled_from(["nihss", "age", "side", "onset_to_imaging_min", "patient"]))
def test_clinical_json_of_any_content_is_validated(value, field):
    payload = {"nihss": 10, field: value}
    try:
        ClinicalInputs.from_json(payload)
    except InputValidationError as exc:
        assert str(exc)
