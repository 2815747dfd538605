"""The small interface both transports implement; errors come out as the SDK's types."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..errors import CollatError, InvalidInput, ModelNotReady, ServerError, ServerUnavailable


class Retryable(ServerUnavailable):
    """A failure worth another try (connection refused/reset, HTTP 503, gRPC UNAVAILABLE)."""


class Transport(Protocol):
    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str],
              timeout: float) -> dict[str, np.ndarray]: ...

    def server_ready(self) -> bool: ...

    def model_ready(self, model: str) -> bool: ...


    def model_config(self, model: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


def classify(message: str, model: str) -> CollatError:
    """A server-side refusal, by its text: Triton's codes differ between protocols but the wording does not."""
    text = message.strip().splitlines()[0] if message.strip() else "no message"
    lowered = text.lower()
    if "unknown model" in lowered or "is not ready" in lowered or "not found" in lowered and "model" in lowered:
        return ModelNotReady(f"{model}: {text}")
    if "internal error" in lowered:
        return ServerError(f"{model}: {text}")
    return InvalidInput(f"{model}: {text}")
