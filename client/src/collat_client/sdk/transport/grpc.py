"""KServe v2 over gRPC with tritonclient (its channel allows messages up to 2 GiB, enough for a 4D volume)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import grpc_error
from .kserve import datatype_of


class GrpcTransport:
    def __init__(self, url: str, *, timeout: float, compress: bool = False) -> None:
        import tritonclient.grpc as grpcclient

        self.module = grpcclient
        self.url = url.removeprefix("grpc://")
        self.timeout = timeout
        self.compression = "gzip" if compress else None
        self.client = grpcclient.InferenceServerClient(self.url)

    def _call(self, what: str, fn, *args, **kwargs):
        from tritonclient.utils import InferenceServerException

        try:
            return fn(*args, **kwargs)
        except InferenceServerException as exc:
            # tritonclient reports the gRPC status as "StatusCode.NAME"; None only for failures of its own.
            raise grpc_error(str(exc.status() or "UNKNOWN"), exc.message() or str(exc),
                             f"{what} at {self.url}") from None

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str],
              timeout: float) -> dict[str, np.ndarray]:
        items = []
        for name, array in inputs.items():
            item = self.module.InferInput(name, list(array.shape), datatype_of(array))
            item.set_data_from_numpy(array)
            items.append(item)
        requested = [self.module.InferRequestedOutput(n) for n in outputs]
        result = self._call(model, self.client.infer, model, items, outputs=requested, client_timeout=timeout,
                            compression_algorithm=self.compression)
        return {n: result.as_numpy(n) for n in outputs}

    def server_ready(self) -> bool:
        return bool(self._call("server", self.client.is_server_ready, client_timeout=10.0))

    def model_ready(self, model: str, version: str = "") -> bool:
        return bool(self._call(model, self.client.is_model_ready, model, version, client_timeout=10.0))

    def model_config(self, model: str) -> dict[str, Any]:
        return self._call(model, self.client.get_model_config, model, as_json=True, client_timeout=10.0)["config"]

    def model_versions(self, model: str) -> list[str]:
        meta = self._call(model, self.client.get_model_metadata, model, as_json=True, client_timeout=10.0)
        return [str(v) for v in meta.get("versions", [])]

    def close(self) -> None:
        self.client.close()
