"""Where a labelled stroke dataset keeps each subject's images, and what its participants table calls each field.

A layout is data, not code, so that a new dataset (another OpenNeuro release, a site's own export) is one
:class:`DatasetLayout` away from the reader rather than a new reader. Patterns are globs relative to the dataset's
root, in which ``{sub}`` stands for the subject's label (the folder name without ``sub-``: ``2`` for ``sub-2``) and
``{ses}`` for any session label. A role lists several patterns when datasets disagree; the first that matches wins.
A role with no patterns is one the dataset does not have, so it is never reported as missing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

# core_mask: the reference diffusion lesion (the acute DWI lesion SOOP and ISLES'22 draw), scored against the
# served ADC core; lesion_mask: a reference hypoperfusion lesion; tmax: a Tmax map in seconds, whose > 6 s region
# is the reference hypoperfusion lesion where no mask is given; reference_maps: the five phase maps, one 4D image.
ROLES: tuple[str, ...] = ("dwi", "adc", "perfusion", "core_mask", "lesion_mask", "tmax", "reference_maps")
# Which role claims a file first: the specific ones before the generic DWI glob, which would match an ADC written
# as BIDS ``rec-ADC_dwi`` (a file is never given to two roles).
CLAIM_ORDER: tuple[str, ...] = ("adc", "core_mask", "lesion_mask", "tmax", "reference_maps", "perfusion", "dwi")
CLINICAL_FIELDS: tuple[str, ...] = ("nihss", "age", "side", "cps_grade", "defuse3")


RAW_FOLDER = "rawdata"  # BIDS raw data kept in a folder of its own beside derivatives/


def _tuple(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class DatasetLayout:
    """Patterns per image role and the participants table's column names (each a list of accepted spellings)."""

    name: str
    dwi: tuple[str, ...] = ()
    adc: tuple[str, ...] = ()
    perfusion: tuple[str, ...] = ()  # 4D, BIDS perf/
    core_mask: tuple[str, ...] = ()  # the reference diffusion lesion (core)
    lesion_mask: tuple[str, ...] = ()  # the reference hypoperfusion lesion
    tmax: tuple[str, ...] = ()  # a Tmax map (s)
    reference_maps: tuple[str, ...] = ()  # the five phase maps (x, y, z, 5), or a folder of them
    subject_folders: str = "sub-*"  # which folders of the root (or of its rawdata/) are subjects
    dicom_studies: bool = False  # each subject folder is a DICOM study (its series are not classified here)
    participants: str = "participants.tsv"
    participant_id: str = "participant_id"
    nihss_columns: tuple[str, ...] = ("nihss", "nihss_admission", "admission_nihss")
    age_columns: tuple[str, ...] = ("age",)
    side_columns: tuple[str, ...] = ("side", "stroke_side", "lesion_side")
    cps_columns: tuple[str, ...] = ("cps_grade", "cps", "collateral_grade")
    defuse3_columns: tuple[str, ...] = ("defuse3", "defuse3_eligible", "defuse_3")

    def __post_init__(self) -> None:
        # A single pattern or column name given as a string would otherwise be iterated character by character.
        for f in fields(self):
            if f.name in ROLES or f.name.endswith("_columns"):
                object.__setattr__(self, f.name, _tuple(getattr(self, f.name)))

    def patterns(self, role: str) -> tuple[str, ...]:
        """The role's patterns, each raw-data one also under ``rawdata/`` (the arrangement ISLES'22 publishes:
        ``rawdata/sub-*`` beside ``derivatives/``)."""
        own = getattr(self, role)
        return own + tuple(f"{RAW_FOLDER}/{p}" for p in own if not p.startswith("derivatives/"))

    def columns(self, field: str) -> tuple[str, ...]:
        """The accepted column names of a clinical field (``cps_grade`` reads ``cps_columns``)."""
        return getattr(self, f"{'cps' if field == 'cps_grade' else field}_columns")


SOOP = DatasetLayout(
    # OpenNeuro ds004889: trace DWI and ADC per subject, the acute diffusion lesion drawn in derivatives; no side
    name="SOOP",
    dwi=("sub-{sub}/dwi/sub-{sub}_rec-TRACE_dwi.nii.gz",),
    adc=("sub-{sub}/dwi/sub-{sub}_rec-ADC_dwi.nii.gz",),
    core_mask=("derivatives/lesion_masks/sub-{sub}/dwi/sub-{sub}_space-TRACE_desc-lesionAcute_mask.nii.gz",),
)

ISLES22 = DatasetLayout(
    # ISLES'22 challenge: one session per case, the diffusion lesion under derivatives with or without dwi/
    name="ISLES22",
    dwi=("sub-{sub}/ses-{ses}/dwi/sub-{sub}_ses-{ses}_dwi.nii.gz",
         "sub-{sub}/ses-{ses}/sub-{sub}_ses-{ses}_dwi.nii.gz"),  # the challenge's example case: no dwi/ folder
    adc=("sub-{sub}/ses-{ses}/dwi/sub-{sub}_ses-{ses}_adc.nii.gz",
         "sub-{sub}/ses-{ses}/sub-{sub}_ses-{ses}_adc.nii.gz"),
    core_mask=("derivatives/sub-{sub}/ses-{ses}/sub-{sub}_ses-{ses}_msk.nii.gz",
                 "derivatives/sub-{sub}/ses-{ses}/dwi/sub-{sub}_ses-{ses}_msk.nii.gz"),
)


def _sessions(*patterns: str) -> tuple[str, ...]:
    """Each subject-relative pattern with and without a session folder."""
    return tuple(p for pattern in patterns for p in (f"sub-{{sub}}/{pattern}", f"sub-{{sub}}/ses-{{ses}}/{pattern}"))


def _derivatives(*names: str) -> tuple[str, ...]:
    """A subject's file under derivatives/ directly or in any pipeline's folder, at any depth, by name pattern."""
    return tuple(f"derivatives/{pipeline}sub-{{sub}}/**/sub-{{sub}}_{name}.nii*" for name in names
                 for pipeline in ("", "*/"))


# The generic fallback: plain BIDS raw data (dwi/, perf/) and masks in any derivatives pipeline's subject folder.
GENERIC_BIDS = DatasetLayout(
    name="BIDS",
    dwi=_sessions("dwi/sub-{sub}*_rec-TRACE_dwi.nii*", "dwi/sub-{sub}*_dwi.nii*"),
    adc=_sessions("dwi/sub-{sub}*_rec-ADC_dwi.nii*", "dwi/sub-{sub}*_adc.nii*"),
    perfusion=_sessions("perf/sub-{sub}*_dsc.nii*", "perf/sub-{sub}*_perf.nii*", "perf/sub-{sub}*_asl.nii*"),
    # A stroke dataset's "lesion" mask is the diffusion lesion (SOOP, ISLES'22, ATLAS-style names): the core role.
    core_mask=_derivatives("*desc-core*_mask", "*desc-lesion*_mask", "*label-lesion*_mask", "*msk"),
    lesion_mask=_derivatives("*desc-hypoperfusion*_mask", "*label-hypoperfusion*_mask"),
    tmax=_derivatives("*Tmax*", "*tmax*"),
    reference_maps=_derivatives("*desc-collateral*"),
)

# One folder per subject holding a DICOM study at any depth; only found by :func:`~.bids.detect_layout` when the
# root has no ``sub-*`` folder.
DICOM_STUDIES = DatasetLayout(name="DICOM", subject_folders="*", dicom_studies=True)

BUILTIN_LAYOUTS: tuple[DatasetLayout, ...] = (SOOP, ISLES22)
