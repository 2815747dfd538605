"""Objects written into a study keep its Specific Character Set, so that a patient's name with accents (Müller,
from an ISO_IR 100 or UTF-8 study) is written as the text it is, not as undeclared bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_writer import write_classic

from collat_client.dicom.capture import failure_capture


@pytest.mark.parametrize("charset", ["ISO_IR 100", "ISO_IR 192"])
def test_a_page_keeps_the_studys_character_set_and_the_accented_name(tmp_path: Path, charset: str):
    write_classic(tmp_path / "dwi", np.full((8, 8, 2, 1), 100.0), np.eye(4), number=7, description="dwi")
    reference = pydicom.dcmread(next((tmp_path / "dwi").iterdir()))
    reference.SpecificCharacterSet = charset
    reference.PatientName = "Müller^Jürgen"
    failure_capture("no series found", reference).save_as(tmp_path / "page.dcm", enforce_file_format=True)
    page = pydicom.dcmread(tmp_path / "page.dcm")
    assert page.SpecificCharacterSet == charset
    assert str(page.PatientName) == "Müller^Jürgen"
    plain = pydicom.dcmread(next((tmp_path / "dwi").iterdir()))  # an ASCII study: nothing declared, as before
    assert "SpecificCharacterSet" not in failure_capture("no series found", plain)
