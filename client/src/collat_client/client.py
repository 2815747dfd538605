"""``CollatClient`` / ``AsyncCollatClient``: images in, typed results out, whichever pipeline fits the inputs."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from collat_contract.names import COLLATERAL_PIPELINE, HYPOPERFUSION_PIPELINE, STROKE_TRIAGE
from collat_contract.tensors import (
    ADC,
    ADC_AFFINE,
    CLINICAL,
    DWI,
    DWI_AFFINE,
    FRAME_SECONDS,
    METRICS,
    PERFUSION,
    PERFUSION_AFFINE,
    PIPELINES,
)

from .dicom import Study, read_study
from .errors import InvalidInput, ServerUnavailable
from .images import (
    Volume,
    check_pair,
    dicom_volumes,
    diffusion_volume,
    nifti_diffusion,
    perfusion_volume,
    read_diffusion,
    read_perfusion,
    study_volumes,
)
from .result import InferenceResult
from .schema import Clinical
from .transport.base import Retryable

Protocol = Literal["http", "grpc"]
ImageInput = str | Path | Volume
T = TypeVar("T")


def _perfusion(value: ImageInput | None) -> Volume | None:
    if value is None:
        return None
    if isinstance(value, Volume):  # in-memory images get the same checks as files
        return perfusion_volume(value.data, value.affine, value.frame_seconds, value.source, value.header)
    return read_perfusion(value)


def _diffusion(value: ImageInput | None, role: str = "dwi", allow_b_value: bool = False) -> Volume | None:
    if value is None:
        return None
    if isinstance(value, Volume):
        return diffusion_volume(value.data, value.affine, value.source, value.header, value.b_value,
                                value.dicom_files)
    return read_diffusion(value, role, allow_b_value)


def _diffusion_pair(dwi: ImageInput | None, adc: ImageInput | None,
                    allow_b_value: bool) -> tuple[Volume | None, Volume | None]:
    """DWI and ADC; a DWI given alone brings its own ADC when it can: a DICOM folder the scanner's or one computed
    from b=0, a multi-b NIfTI with its .bval one computed from b=0."""
    if dwi is not None and adc is None and isinstance(dwi, (str, Path)):
        found = dicom_volumes(Path(dwi), "dwi", allow_b_value=allow_b_value) if Path(dwi).is_dir() else \
            nifti_diffusion(Path(dwi), allow_b_value)
        return found["dwi"], found.get("adc")
    return _diffusion(dwi, "dwi", allow_b_value), _diffusion(adc, "adc", allow_b_value)


def prepare_request(perfusion: ImageInput | None, dwi: ImageInput | None, adc: ImageInput | None,
                    clinical: Clinical | dict | None, *, study: Study | str | Path | None = None,
                    allow_b_value: bool = False) -> tuple[str, dict[str, np.ndarray], dict[str, Volume]]:
    """Read and check everything locally, pick the pipeline, and build its tensors (no I/O with the server).

    ``study`` (a DICOM folder, or a :class:`~collat_client.dicom.Study` already read) supplies whatever the explicit
    arguments leave out. A DWI outside the trained b-value range is refused unless ``allow_b_value``."""
    if study is not None:
        if not isinstance(study, Study):
            study = read_study(study, allow_b_value=allow_b_value)
        found = study_volumes(study)
        if not found and perfusion is None and dwi is None:
            left = [f"{e.label}: {e.reason}" for e in study.entries if e.role in ("perfusion", "dwi", "unreadable")]
            raise InvalidInput(f"{study.folder}: nothing to analyse" + (f" ({'; '.join(left)})" if left else
                                                                        ": no perfusion, DWI or ADC series"))
        perfusion = perfusion if perfusion is not None else found.get("perfusion")
        if dwi is None and adc is None:
            dwi, adc = found.get("dwi"), found.get("adc")
            if dwi is None and adc is not None and perfusion is None:
                raise InvalidInput(f"{study.folder}: nothing to analyse: {study.adc.label} is an ADC with no DWI")
            if dwi is not None and clinical is None:
                raise InvalidInput(f"{study.folder}: the study holds a DWI ({study.dwi.label}); the hypoperfusion "
                                   "pipeline needs clinical data (give the NIHSS)")
    d, a = _diffusion_pair(dwi, adc, allow_b_value)
    if d is not None and a is None:
        raise InvalidInput(f"{d.source}: no ADC: give one (--adc), or a DWI series with a b=0 volume to compute it")
    if (d is None) != (a is None):
        raise InvalidInput("give both DWI and ADC, or neither")
    if perfusion is None and d is None:
        raise InvalidInput("nothing to analyse: give a perfusion series, or DWI + ADC, or all three")
    volumes: dict[str, Volume] = {}
    tensors: dict[str, np.ndarray] = {}
    perf = _perfusion(perfusion)
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
    return pipeline, tensors, volumes


class _RetryPolicy:
    def __init__(self, retries: int, backoff: float) -> None:
        self.retries, self.backoff = retries, backoff

    def delay(self, attempt: int) -> float:
        return self.backoff * (2 ** attempt) * random.uniform(0.5, 1.5)

    def run(self, call: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except Retryable as exc:
                if attempt == self.retries:
                    raise ServerUnavailable(f"{exc} (gave up after {self.retries + 1} attempts)") from None
                time.sleep(self.delay(attempt))
        raise AssertionError("unreachable")

    async def run_async(self, call: Callable[[], Any]) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except Retryable as exc:
                if attempt == self.retries:
                    raise ServerUnavailable(f"{exc} (gave up after {self.retries + 1} attempts)") from None
                await asyncio.sleep(self.delay(attempt))
        raise AssertionError("unreachable")


def _make_transport(url: str, protocol: Protocol, timeout: float, compress: bool):
    if protocol == "http":
        from .transport.http import HttpTransport

        return HttpTransport(url, timeout=timeout, compress=compress)
    if protocol == "grpc":
        from .transport.grpc import GrpcTransport

        return GrpcTransport(url, timeout=timeout, compress=compress)
    raise ValueError(f"protocol must be http or grpc, got {protocol!r}")


def _result(pipeline: str, outputs: dict[str, np.ndarray], volumes: dict[str, Volume], seconds: float):
    metrics = json.loads(outputs.pop(METRICS.name).reshape(-1)[0])
    return InferenceResult.from_outputs(pipeline, metrics, outputs, volumes, seconds)


class CollatClient:
    """Synchronous SDK entry point; thread-safe (one connection pool shared by all threads).

    >>> with CollatClient("127.0.0.1:8000") as client:
    ...     result = client.infer(perfusion="scan.nii.gz")
    ...     result.save("out/")
    """

    def __init__(self, url: str = "127.0.0.1:8000", *, protocol: Protocol = "http", timeout: float = 300.0,
                 retries: int = 3, backoff: float = 0.5, compress: bool = False) -> None:
        self.url, self.protocol, self.timeout = url, protocol, timeout
        self._policy = _RetryPolicy(retries, backoff)
        self._transport = _make_transport(url, protocol, timeout, compress)

    def __enter__(self) -> CollatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def server_ready(self) -> bool:
        return self._policy.run(self._transport.server_ready)

    def model_ready(self, model: str) -> bool:
        return self._policy.run(lambda: self._transport.model_ready(model))

    def model_config(self, model: str) -> dict[str, Any]:
        return self._policy.run(lambda: self._transport.model_config(model))

    def infer(self, *, perfusion: ImageInput | None = None, dwi: ImageInput | None = None,
              adc: ImageInput | None = None, clinical: Clinical | dict | None = None,
              study: Study | str | Path | None = None, allow_b_value: bool = False,
              progress: Callable[[str], None] | None = None) -> InferenceResult:
        """Run the pipeline the inputs call for; inputs are checked locally before anything is uploaded.
        ``study``: a DICOM study folder (or a :class:`~collat_client.dicom.Study`) that supplies what is not given."""
        note = progress or (lambda _m: None)
        note("reading")
        pipeline, tensors, volumes = prepare_request(perfusion, dwi, adc, clinical, study=study,
                                                     allow_b_value=allow_b_value)
        outputs = [t.name for t in PIPELINES[pipeline].outputs]
        note(f"uploading to {pipeline} and running inference")
        start = time.perf_counter()
        answer = self._policy.run(lambda: self._transport.infer(pipeline, tensors, outputs, self.timeout))
        return _result(pipeline, answer, volumes, time.perf_counter() - start)


class AsyncCollatClient:
    """The same surface for asyncio programs. HTTP runs on ``httpx.AsyncClient``; gRPC calls the
    thread-safe synchronous tritonclient stub in a worker thread (its asyncio API needs a newer grpcio)."""

    def __init__(self, url: str = "127.0.0.1:8000", *, protocol: Protocol = "http", timeout: float = 300.0,
                 retries: int = 3, backoff: float = 0.5, compress: bool = False) -> None:
        self.url, self.protocol, self.timeout = url, protocol, timeout
        self._policy = _RetryPolicy(retries, backoff)
        if protocol == "http":
            from .transport.http import AsyncHttpTransport

            self._async = AsyncHttpTransport(url, timeout=timeout, compress=compress)
            self._sync = None
        else:
            self._async = None
            self._sync = _make_transport(url, protocol, timeout, compress)

    async def __aenter__(self) -> AsyncCollatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._async is not None:
            await self._async.close()
        else:
            self._sync.close()

    async def _call(self, method: str, *args: Any) -> Any:
        if self._async is not None:
            return await self._policy.run_async(lambda: getattr(self._async, method)(*args))
        return await self._policy.run_async(lambda: asyncio.to_thread(getattr(self._sync, method), *args))

    async def server_ready(self) -> bool:
        return await self._call("server_ready")

    async def model_ready(self, model: str) -> bool:
        return await self._call("model_ready", model)

    async def model_config(self, model: str) -> dict[str, Any]:
        return await self._call("model_config", model)

    async def infer(self, *, perfusion: ImageInput | None = None, dwi: ImageInput | None = None,
                    adc: ImageInput | None = None, clinical: Clinical | dict | None = None,
                    study: Study | str | Path | None = None, allow_b_value: bool = False) -> InferenceResult:
        pipeline, tensors, volumes = await asyncio.to_thread(
            lambda: prepare_request(perfusion, dwi, adc, clinical, study=study, allow_b_value=allow_b_value))
        outputs = [t.name for t in PIPELINES[pipeline].outputs]
        start = time.perf_counter()
        answer = await self._call("infer", pipeline, tensors, outputs, self.timeout)
        return _result(pipeline, answer, volumes, time.perf_counter() - start)
