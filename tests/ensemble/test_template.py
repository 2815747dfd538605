"""The MNI registration target: built from the nilearn wheel, saved and read back as the server reads it."""

from __future__ import annotations

import numpy as np
import pytest

from collat_ensemble.errors import InputValidationError
from collat_ensemble.template import TEMPLATE_SHAPE, default_template, load_template, save_template


def test_the_template_has_a_dwi_contrast_on_the_whole_mni_box():
    template = default_template()
    assert template.dwi.shape == template.brain.shape == TEMPLATE_SHAPE
    assert 1300 < template.brain_ml < 2000  # grey + white matter of an adult brain, partial volume included
    median = float(np.median(template.dwi[template.brain]))
    for x_mm in (-10, 10):  # the lateral ventricles at MNI (+-10, 0, 20): CSF is dark at b=1000
        assert template.dwi[(x_mm + 90) // 2, 63, 46] < 0.5 * median
    assert template.dwi[(-20 + 90) // 2, 63, 46] > 0.8 * median  # the white matter beside them is not


def test_a_saved_template_reads_back_exactly(tmp_path):
    template = default_template()
    loaded = load_template(save_template(template, tmp_path / "t.npz"))
    np.testing.assert_array_equal(loaded.dwi, template.dwi)
    np.testing.assert_array_equal(loaded.brain, template.brain)
    assert not list(tmp_path.glob(".*partial"))


def test_anything_else_is_refused_by_name(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not an archive")
    with pytest.raises(InputValidationError, match="bad.npz: not a registration template"):
        load_template(tmp_path / "bad.npz")
    np.savez(tmp_path / "small.npz", dwi=np.zeros((4, 4, 4)), brain=np.packbits(np.zeros(64, bool)),
             affine=np.eye(4))
    with pytest.raises(InputValidationError, match="is not the MNI 2 mm grid"):
        load_template(tmp_path / "small.npz")
