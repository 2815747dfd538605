"""The small interface both transports implement, and how a server's refusal becomes one of the SDK's errors.

Errors are typed by what the protocol says, never by the wording of the message: the HTTP
status code (Triton maps its error codes onto them: INVALID_ARG and UNKNOWN -> 400,
NOT_FOUND -> 404, INTERNAL -> 500, UNSUPPORTED -> 501, UNAVAILABLE -> 503) or the gRPC status
code, with the message taken from the KServe error body (``{"error": "..."}``) and kept
verbatim for the user.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import numpy as np

from ...errors import (
    CollatError,
    InferenceTimeout,
    InvalidInput,
    ModelNotReady,
    QueueFull,
    ServerError,
    ServerUnavailable,
)


class Retryable(ServerUnavailable):
    """A failure the client's retry policy tries again (connection refused/reset, HTTP 503, gRPC UNAVAILABLE);
    once the budget is spent it surfaces as :class:`ServerUnavailable` (or :class:`QueueFull`)."""


class Busy(Retryable, QueueFull):
    """The server's queue is full (HTTP 429, gRPC RESOURCE_EXHAUSTED): retried like any :class:`Retryable`."""


class Transport(Protocol):
    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str],
              timeout: float) -> dict[str, np.ndarray]: ...

    def server_ready(self) -> bool: ...

    def model_ready(self, model: str, version: str = "") -> bool: ...

    def model_config(self, model: str) -> dict[str, Any]: ...

    def model_versions(self, model: str) -> list[str]: ...

    def close(self) -> None: ...


# HTTP status -> error type. Anything else at or above 500 is a server error; below, a refused input.
HTTP_ERRORS: dict[int, type[CollatError]] = {
    400: InvalidInput, 404: ModelNotReady, 408: InferenceTimeout, 413: InvalidInput, 422: InvalidInput,
    429: Busy, 500: ServerError, 501: ServerError, 503: Retryable, 504: InferenceTimeout,
}
# gRPC status code name -> error type; a code not listed is a server error.
GRPC_ERRORS: dict[str, type[CollatError]] = {
    "INVALID_ARGUMENT": InvalidInput, "OUT_OF_RANGE": InvalidInput, "FAILED_PRECONDITION": InvalidInput,
    "NOT_FOUND": ModelNotReady, "UNAVAILABLE": Retryable, "RESOURCE_EXHAUSTED": Busy,
    "DEADLINE_EXCEEDED": InferenceTimeout, "CANCELLED": ServerUnavailable,
}


def kserve_error_message(body: bytes | str) -> str:
    """The ``error`` of a KServe v2 error body; the body itself when it is not one."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip() or "no message"
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"].strip() or "no message"
    return text.strip() or "no message"


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0] if lines else "no message"


def http_error(status: int, body: bytes | str, what: str) -> CollatError:
    kind = HTTP_ERRORS.get(status, ServerError if status >= 500 else InvalidInput)
    return kind(f"{what}: {_first_line(kserve_error_message(body))} (HTTP {status})")


def grpc_error(code: str, message: str, what: str) -> CollatError:
    """``code`` is the gRPC status name (``StatusCode.INVALID_ARGUMENT`` or ``INVALID_ARGUMENT``)."""
    name = code.rsplit(".", 1)[-1]
    kind = GRPC_ERRORS.get(name, ServerError)
    return kind(f"{what}: {_first_line(message)} (gRPC {name})")
