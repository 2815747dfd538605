"""DICOM in: a folder of any depth, as scanners and PACS send it, to checked volumes and a record of the choice.

Conversion runs on ``dcm2niix`` (the field's reference converter, a binary in its PyPI wheel):
it reads classic, enhanced multi-frame and Siemens mosaic series, the compressed transfer
syntaxes PACS exports use (JPEG lossless, JPEG-LS, JPEG 2000, RLE), vendors' scaling and
b-value tags, and puts out NIfTI with an exact affine. This package walks the headers itself
(pydicom, no pixels) to group instances by series, to name the non-image objects it ignores,
and to read b-values where dcm2niix leaves none (a single-volume trace). Patient and study
tags are never read: ``dcm2niix`` runs with its BIDS anonymizer on, and the header walk reads a
fixed list of technical tags.
"""

from .study import SeriesEntry, Study, read_study

__all__ = ["SeriesEntry", "Study", "read_study"]
