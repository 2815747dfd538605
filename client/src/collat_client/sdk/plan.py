"""What a user or a study provides -> what to send: the pipeline, its tensors, and the volumes the outputs land on.

The one place that decides what a study is sent as, so that the CLI, the SDK and the DICOM node cannot drift:
everything is read and checked locally, nothing touches the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collat_contract.names import (
    COLLATERAL_PIPELINE,
    HYPOPERFUSION_PIPELINE,
    NETWORKS,
    PIPELINES_OF_NETWORK,
    STROKE_TRIAGE,
    pinned,
)
from collat_contract.tensors import (
    ADC,
    ADC_AFFINE,
    CLINICAL,
    DWI,
    DWI_AFFINE,
    FRAME_SECONDS,
    PERFUSION,
    PERFUSION_AFFINE,
    PIPELINES,
)

from ..dicom import Study, read_study
from ..errors import InvalidInput
from ..imaging.volumes import Volume, check_pair
from ..schema import Clinical
from .inputs import ImageInput, diffusion_pair, perfusion_input, study_volumes
from .result import output_files


@dataclass
class RequestPlan:
    """A request ready to send: ``tensors`` for ``pipeline``; ``volumes`` (keys perfusion, dwi, adc) are the grids
    the outputs are written on; ``notes`` say what was left out and why."""

    pipeline: str
    tensors: dict[str, np.ndarray]
    volumes: dict[str, Volume]
    study: Study | None = None
    notes: list[str] = field(default_factory=list)
    model: str = ""  # the served model to call: the pipeline, or its copy pinned to one network version

    def __post_init__(self) -> None:
        self.model = self.model or self.pipeline

    @property
    def outputs(self) -> list[str]:
        """The output tensors to ask the pipeline for."""
        return [t.name for t in PIPELINES[self.pipeline].outputs]

    @property
    def output_files(self) -> list[str]:
        """The files :meth:`InferenceResult.save` will write for this plan."""
        return output_files("perfusion" in self.volumes, "dwi" in self.volumes)


def _study(study: Study | str | Path, allow_b_value: bool, choices: dict[str, str | None],
           on_study: Callable[[Study], None] | None) -> Study:
    if not isinstance(study, Study):
        study = read_study(study, allow_b_value=allow_b_value, **choices)
    if on_study is not None:
        on_study(study)
    return study


def plan_request(*, perfusion: ImageInput | None = None, dwi: ImageInput | None = None,
                 adc: ImageInput | None = None, clinical: Clinical | dict | None = None,
                 study: Study | str | Path | None = None, perfusion_series: str | None = None,
                 dwi_series: str | None = None, adc_series: str | None = None, allow_b_value: bool = False,
                 diffusion_without_clinical: str = "refuse", clinical_hint: str = "give the NIHSS",
                 on_study: Callable[[Study], None] | None = None,
                 model_version: dict[str, int | str] | None = None, study_perfusion: bool = True) -> RequestPlan:
    """Read and check everything locally, pick the pipeline, and build its tensors.

    ``study`` (a DICOM folder, or a :class:`Study` already read, its series chosen by ``*_series`` when given)
    supplies whatever the explicit arguments leave out; ``on_study`` sees it as soon as it is read. A DWI outside
    the trained b-value range is refused unless ``allow_b_value``. A study's DWI with no clinical data is refused
    (``diffusion_without_clinical="refuse"``, a person can give the NIHSS; ``clinical_hint`` says how) or, for a
    study that also holds a perfusion series, left out with a note (``"skip"``, for unattended nodes).
    ``model_version``: ``{network: version}`` pins one network of the pipeline to one of the versions the server has
    loaded (``collat-client models`` lists them). ``study_perfusion=False`` leaves the study's perfusion series out
    (the DICOM node's second pass, once the NIHSS arrives for collaterals already sent)."""
    notes: list[str] = []
    choices = {"perfusion_series": perfusion_series, "dwi_series": dwi_series, "adc_series": adc_series}
    if study is None and any(choices.values()):
        raise InvalidInput("--perfusion-series, --dwi-series and --adc-series choose series in a DICOM study folder")
    if study is not None:
        study = _study(study, allow_b_value, {k: v for k, v in choices.items() if v is not None}, on_study)
        found = study_volumes(study)
        if not found and perfusion is None and dwi is None:
            left = [f"{e.label}: {e.reason}" for e in study.entries if e.role in ("perfusion", "dwi", "unreadable")]
            raise InvalidInput(f"{study.folder}: nothing to analyse" + (f" ({'; '.join(left)})" if left else
                                                                        ": no perfusion, DWI or ADC series"))
        perfusion = perfusion if perfusion is not None else found.get("perfusion") if study_perfusion else None
        if dwi is None and adc is None:
            dwi, adc = found.get("dwi"), found.get("adc")
            if dwi is None and adc is not None and perfusion is None:
                raise InvalidInput(f"{study.folder}: nothing to analyse: {study.adc.label} is an ADC with no DWI")
            if dwi is not None and clinical is None:
                if diffusion_without_clinical != "skip" or perfusion is None:
                    raise InvalidInput(f"{study.folder}: the study holds a DWI ({study.dwi.label}); the "
                                       f"hypoperfusion pipeline needs clinical data ({clinical_hint})")
                dwi = adc = None
                notes.append("no NIHSS for it, the DWI is not analysed (collaterals only)")
    d, a = diffusion_pair(dwi, adc, allow_b_value)
    if d is not None and a is None:
        raise InvalidInput(f"{d.source}: no ADC: give one (--adc), or a DWI series with a b=0 volume to compute it")
    if (d is None) != (a is None):
        raise InvalidInput("give both DWI and ADC, or neither")
    if perfusion is None and d is None:
        raise InvalidInput("nothing to analyse: give a perfusion series, or DWI + ADC, or all three")
    volumes: dict[str, Volume] = {}
    tensors: dict[str, np.ndarray] = {}
    perf = perfusion_input(perfusion)
    if perf is not None:
        volumes["perfusion"] = perf
        tensors.update({PERFUSION.name: perf.data, PERFUSION_AFFINE.name: perf.affine,
                        FRAME_SECONDS.name: np.array([perf.frame_seconds], np.float32)})
    if d is not None and a is not None:
        if clinical is None:
            raise InvalidInput("the hypoperfusion pipeline needs clinical data (at least the NIHSS)")
        clinical = clinical if isinstance(clinical, Clinical) else Clinical.model_validate(clinical)
        if clinical.dwi_b_value is None and d.b_value is not None:  # the header's b-value goes to the b-value gate
            clinical = Clinical.model_validate({**clinical.model_dump(), "dwi_b_value": d.b_value})
        check_pair(d, a)
        volumes.update(dwi=d, adc=a)
        # Only the validated clinical fields travel: no identifiers can ride along.
        tensors.update({DWI.name: d.data, ADC.name: a.data, DWI_AFFINE.name: d.affine, ADC_AFFINE.name: a.affine,
                        CLINICAL.name: np.array([clinical.model_dump_json().encode()], dtype=np.object_)})
    pipeline = STROKE_TRIAGE if perf is not None and d is not None else \
        COLLATERAL_PIPELINE if perf is not None else HYPOPERFUSION_PIPELINE
    return RequestPlan(pipeline, tensors, volumes, study if isinstance(study, Study) else None, notes,
                       _pinned_model(pipeline, model_version))


def _pinned_model(pipeline: str, model_version: dict[str, int | str] | None) -> str:
    if not model_version:
        return pipeline
    if len(model_version) > 1:
        raise InvalidInput(f"pin one network's version per request, not {', '.join(sorted(model_version))}")
    ((network, version),) = model_version.items()
    if network not in NETWORKS:
        raise InvalidInput(f"model version: {network!r} is not a network ({', '.join(NETWORKS)})")
    if pipeline not in PIPELINES_OF_NETWORK[network]:
        raise InvalidInput(f"model version: {pipeline} does not run {network}")
    if not str(version).isdigit() or int(version) < 1:
        raise InvalidInput(f"model version: {network} version {version!r} is not a version number")
    return pinned(pipeline, network, int(version))
