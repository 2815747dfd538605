"""``CollatClient`` / ``AsyncCollatClient``: images in, typed results out, whichever pipeline fits the inputs.

Both build their request with :func:`~collat_client.sdk.plan.plan_request` and read the answer with one function,
so the two surfaces cannot drift; a transport can be injected (a test's stand-in, a custom channel)."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from collat_contract.tensors import METRICS

from ..dicom import Study
from ..errors import QueueFull, ServerUnavailable
from ..schema import Clinical
from .inputs import ImageInput
from .plan import RequestPlan, plan_request
from .result import InferenceResult
from .transport.base import Retryable, Transport

Protocol = Literal["http", "grpc"]
Progress = Callable[[str], None]
T = TypeVar("T")


class _RetryPolicy:
    def __init__(self, retries: int, backoff: float) -> None:
        self.retries, self.backoff = retries, backoff

    def given_up(self, exc: Retryable) -> ServerUnavailable:
        kind = QueueFull if isinstance(exc, QueueFull) else ServerUnavailable
        return kind(f"{exc} (gave up after {self.retries + 1} attempts)")

    def delay(self, attempt: int) -> float:
        return self.backoff * (2 ** attempt) * random.uniform(0.5, 1.5)

    def run(self, call: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except Retryable as exc:
                if attempt == self.retries:
                    raise self.given_up(exc) from None
                time.sleep(self.delay(attempt))
        raise AssertionError("unreachable")

    async def run_async(self, call: Callable[[], Any]) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except Retryable as exc:
                if attempt == self.retries:
                    raise self.given_up(exc) from None
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


def _result(plan: RequestPlan, outputs: dict[str, np.ndarray], seconds: float) -> InferenceResult:
    metrics = json.loads(outputs.pop(METRICS.name).reshape(-1)[0])
    return InferenceResult.from_outputs(plan.pipeline, metrics, outputs, plan.volumes, seconds)


def _plan(perfusion: ImageInput | None, dwi: ImageInput | None, adc: ImageInput | None,
          clinical: Clinical | dict | None, study: Study | str | Path | None, allow_b_value: bool,
          model_version: dict[str, int | str] | None, note: Progress) -> RequestPlan:
    note("reading")
    return plan_request(perfusion=perfusion, dwi=dwi, adc=adc, clinical=clinical, study=study,
                        allow_b_value=allow_b_value, model_version=model_version)


def _silent(_message: str) -> None:
    return None


class CollatClient:
    """Synchronous SDK entry point; thread-safe (one connection pool shared by all threads).

    >>> with CollatClient("127.0.0.1:8000") as client:
    ...     result = client.infer(perfusion="scan.nii.gz")
    ...     result.save("out/")

    ``transport``: send through this instead of a new HTTP or gRPC connection (anything with
    :class:`~collat_client.sdk.transport.base.Transport`'s methods).
    """

    def __init__(self, url: str = "127.0.0.1:8000", *, protocol: Protocol = "http", timeout: float = 300.0,
                 retries: int = 3, backoff: float = 0.5, compress: bool = False,
                 transport: Transport | None = None) -> None:
        self.url, self.protocol, self.timeout = url, protocol, timeout
        self._policy = _RetryPolicy(retries, backoff)
        self._transport = transport or _make_transport(url, protocol, timeout, compress)

    def __enter__(self) -> CollatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def server_ready(self) -> bool:
        return self._policy.run(self._transport.server_ready)

    def model_ready(self, model: str, version: str = "") -> bool:
        """Is ``model`` (at ``version``, else the version the server serves) ready?"""
        return self._policy.run(lambda: self._transport.model_ready(model, version))

    def model_config(self, model: str) -> dict[str, Any]:
        return self._policy.run(lambda: self._transport.model_config(model))

    def model_versions(self, model: str) -> list[str]:
        """The versions of ``model`` the server has loaded."""
        return self._policy.run(lambda: self._transport.model_versions(model))

    def run(self, plan: RequestPlan, progress: Progress | None = None) -> InferenceResult:
        """Send a plan made by :func:`~collat_client.sdk.plan.plan_request` and read the answer."""
        (progress or _silent)(f"uploading to {plan.model} and running inference")
        start = time.perf_counter()
        answer = self._policy.run(lambda: self._transport.infer(plan.model, plan.tensors, plan.outputs,
                                                                self.timeout))
        return _result(plan, answer, time.perf_counter() - start)

    def infer(self, *, perfusion: ImageInput | None = None, dwi: ImageInput | None = None,
              adc: ImageInput | None = None, clinical: Clinical | dict | None = None,
              study: Study | str | Path | None = None, allow_b_value: bool = False,
              model_version: dict[str, int | str] | None = None, progress: Progress | None = None,
              ) -> InferenceResult:
        """Run the pipeline the inputs call for; inputs are checked locally before anything is uploaded.
        ``study``: a DICOM study folder (or a :class:`~collat_client.dicom.Study`) that supplies what is not given.
        ``model_version``: ``{"hypoperfusion_unet": 1}`` runs that network at that loaded version."""
        plan = _plan(perfusion, dwi, adc, clinical, study, allow_b_value, model_version, progress or _silent)
        return self.run(plan, progress)


class AsyncCollatClient:
    """The same surface for asyncio programs. HTTP runs on ``httpx.AsyncClient``; gRPC (or an injected synchronous
    ``transport``) runs in a worker thread (tritonclient's asyncio API needs a newer grpcio). Reading the images
    runs in a worker thread too, so the event loop stays free."""

    def __init__(self, url: str = "127.0.0.1:8000", *, protocol: Protocol = "http", timeout: float = 300.0,
                 retries: int = 3, backoff: float = 0.5, compress: bool = False, transport: Any = None) -> None:
        self.url, self.protocol, self.timeout = url, protocol, timeout
        self._policy = _RetryPolicy(retries, backoff)
        if transport is None and protocol == "http":
            from .transport.http import AsyncHttpTransport

            transport = AsyncHttpTransport(url, timeout=timeout, compress=compress)
        self._transport = transport or _make_transport(url, protocol, timeout, compress)
        self._is_async = inspect.iscoroutinefunction(self._transport.infer)

    async def __aenter__(self) -> AsyncCollatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        closed = self._transport.close()
        if inspect.isawaitable(closed):
            await closed

    async def _call(self, method: str, *args: Any) -> Any:
        call = getattr(self._transport, method)
        if self._is_async:
            return await self._policy.run_async(lambda: call(*args))
        return await self._policy.run_async(lambda: asyncio.to_thread(call, *args))

    async def server_ready(self) -> bool:
        return await self._call("server_ready")

    async def model_ready(self, model: str, version: str = "") -> bool:
        return await self._call("model_ready", model, version)

    async def model_config(self, model: str) -> dict[str, Any]:
        return await self._call("model_config", model)

    async def model_versions(self, model: str) -> list[str]:
        return await self._call("model_versions", model)

    async def run(self, plan: RequestPlan, progress: Progress | None = None) -> InferenceResult:
        """Send a plan made by :func:`~collat_client.sdk.plan.plan_request` and read the answer."""
        (progress or _silent)(f"uploading to {plan.model} and running inference")
        start = time.perf_counter()
        answer = await self._call("infer", plan.model, plan.tensors, plan.outputs, self.timeout)
        return _result(plan, answer, time.perf_counter() - start)

    async def infer(self, *, perfusion: ImageInput | None = None, dwi: ImageInput | None = None,
                    adc: ImageInput | None = None, clinical: Clinical | dict | None = None,
                    study: Study | str | Path | None = None, allow_b_value: bool = False,
                    model_version: dict[str, int | str] | None = None, progress: Progress | None = None,
                    ) -> InferenceResult:
        """As :meth:`CollatClient.infer`."""
        plan = await asyncio.to_thread(_plan, perfusion, dwi, adc, clinical, study, allow_b_value, model_version,
                                       progress or _silent)
        return await self.run(plan, progress)
