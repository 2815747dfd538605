"""Labelled stroke datasets on disk (SOOP, ISLES'22, plain BIDS, DICOM study folders) read into subjects."""

from .bids import (
    Clinical,
    Dataset,
    DatasetError,
    Subject,
    SubjectPaths,
    detect_layout,
    is_dicom_study,
    natural_key,
    parse_clinical,
    read_dataset,
    read_participants,
)
from .layouts import BUILTIN_LAYOUTS, DICOM_STUDIES, GENERIC_BIDS, ISLES22, SOOP, DatasetLayout

__all__ = ["BUILTIN_LAYOUTS", "DICOM_STUDIES", "GENERIC_BIDS", "ISLES22", "SOOP", "Clinical", "Dataset",
           "DatasetError", "DatasetLayout", "Subject", "SubjectPaths", "detect_layout", "is_dicom_study",
           "natural_key", "parse_clinical", "read_dataset", "read_participants"]
