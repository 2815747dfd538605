"""KServe v2 over HTTP with httpx: one connection pool per transport, binary tensors, optional gzip."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np

from ...errors import InferenceTimeout
from .base import Retryable, http_error
from .kserve import HEADER_LENGTH, RequestBody, decode_response, encode_request


def _base_url(url: str) -> str:
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def _request_parts(inputs: dict[str, np.ndarray], outputs: list[str],
                   compress: bool) -> tuple[bytes | RequestBody, dict]:
    """The body (gzip-compressed bytes, or the uncopied tensors to stream) and its headers."""
    body = encode_request(inputs, outputs)
    headers = {HEADER_LENGTH: str(body.header_length), "Content-Type": "application/octet-stream",
               "Accept-Encoding": "gzip" if compress else "identity"}
    if compress:
        headers["Content-Encoding"] = "gzip"
        return gzip.compress(body.tobytes(), compresslevel=1), headers
    headers["Content-Length"] = str(body.nbytes)  # streamed with a known length, not chunked
    return body, headers


def _content(body: bytes | RequestBody) -> Any:
    return body if isinstance(body, bytes) else body.chunks()


async def _async_content(body: bytes | RequestBody) -> AsyncIterator[bytes | memoryview]:
    if isinstance(body, bytes):
        yield body
        return
    for chunk in body.chunks():
        yield chunk


def _model_path(model: str, version: str) -> str:
    """A model's KServe path, at one version when given (else the server's choice)."""
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "")


def _checked(response: httpx.Response, what: str) -> httpx.Response:
    """The response when it is a success; otherwise the SDK's error for its status code and KServe error body."""
    if response.status_code != 200:
        raise http_error(response.status_code, response.content, what)
    return response


def _answer(response: httpx.Response, model: str) -> dict[str, np.ndarray]:
    _checked(response, model)
    length = response.headers.get(HEADER_LENGTH)
    return decode_response(response.content, int(length) if length is not None else None)


class _Requests:
    """What the sync and async transports share: the base URL, the timeouts and the mapping of failures."""

    def __init__(self, url: str, *, timeout: float, compress: bool) -> None:
        self.base = _base_url(url)
        self.compress = compress
        self.timeouts = httpx.Timeout(timeout, connect=10.0)

    def failure(self, exc: httpx.HTTPError, what: str, timeout: float | None = None) -> Exception:
        if isinstance(exc, httpx.TimeoutException):
            limit = f" within {timeout:g} s" if timeout is not None else ""
            return InferenceTimeout(f"{what}: no answer{limit} from {self.base}")
        return Retryable(f"{self.base}: cannot connect ({type(exc).__name__})")


class HttpTransport(_Requests):
    """``http_transport``: httpx's own transport to send through (``httpx.MockTransport`` in tests)."""

    def __init__(self, url: str, *, timeout: float, compress: bool = False,
                 http_transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, timeout=timeout, compress=compress)
        self.client = httpx.Client(base_url=self.base, timeout=self.timeouts, transport=http_transport)

    def _get(self, path: str) -> httpx.Response:
        try:
            return self.client.get(path)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise self.failure(exc, f"{self.base}{path}") from None

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str],
              timeout: float) -> dict[str, np.ndarray]:
        body, headers = _request_parts(inputs, outputs, self.compress)
        try:
            response = self.client.post(f"/v2/models/{model}/infer", content=_content(body), headers=headers,
                                        timeout=timeout)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise self.failure(exc, model, timeout) from None
        return _answer(response, model)

    def server_ready(self) -> bool:
        return self._get("/v2/health/ready").status_code == 200

    def model_ready(self, model: str, version: str = "") -> bool:
        return self._get(f"{_model_path(model, version)}/ready").status_code == 200

    def model_config(self, model: str) -> dict[str, Any]:
        return _checked(self._get(f"/v2/models/{model}/config"), model).json()

    def model_versions(self, model: str) -> list[str]:
        return [str(v) for v in _checked(self._get(f"/v2/models/{model}"), model).json().get("versions", [])]

    def close(self) -> None:
        self.client.close()


class AsyncHttpTransport(_Requests):
    """The same requests on ``httpx.AsyncClient`` for asyncio programs."""

    def __init__(self, url: str, *, timeout: float, compress: bool = False,
                 http_transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, timeout=timeout, compress=compress)
        self.client = httpx.AsyncClient(base_url=self.base, timeout=self.timeouts, transport=http_transport)

    async def _get(self, path: str) -> httpx.Response:
        try:
            return await self.client.get(path)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise self.failure(exc, f"{self.base}{path}") from None

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str],
                    timeout: float) -> dict[str, np.ndarray]:
        body, headers = _request_parts(inputs, outputs, self.compress)
        try:
            response = await self.client.post(f"/v2/models/{model}/infer", content=_async_content(body),
                                              headers=headers, timeout=timeout)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise self.failure(exc, model, timeout) from None
        return _answer(response, model)

    async def server_ready(self) -> bool:
        return (await self._get("/v2/health/ready")).status_code == 200

    async def model_ready(self, model: str, version: str = "") -> bool:
        return (await self._get(f"{_model_path(model, version)}/ready")).status_code == 200

    async def model_config(self, model: str) -> dict[str, Any]:
        return _checked(await self._get(f"/v2/models/{model}/config"), model).json()

    async def model_versions(self, model: str) -> list[str]:
        response = await self._get(f"/v2/models/{model}")
        return [str(v) for v in _checked(response, model).json().get("versions", [])]

    async def close(self) -> None:
        await self.client.aclose()
