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
    ventricle = template.dwi[45, 63, 47]  # the lateral ventricles in MNI space (0, 0, 22): CSF is dark at b=1000
    assert ventricle < 0.5 * float(np.median(template.dwi[template.brain]))


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
