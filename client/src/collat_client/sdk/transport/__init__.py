"""How requests reach the server: KServe v2 over HTTP (httpx, binary tensors) or gRPC (tritonclient)."""

from .base import Retryable, Transport

__all__ = ["Retryable", "Transport"]
