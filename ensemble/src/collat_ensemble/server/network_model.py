"""Triton Python-backend model that runs ``model.onnx`` in ONNX Runtime on the CPU.

The pip-installed tritonserver (nvidia-pytriton) ships without the onnxruntime backend,
so on machines without a GPU each network is served by this file. It keeps Triton's
dynamic batching meaningful: the requests Triton hands over in one ``execute`` call are
stacked along the batch axis (grouped by shape, since 3D-MROD-Net's grid is dynamic) and
run as one ONNX Runtime call. It imports only numpy and onnxruntime, never the project's
packages, so it runs in any Python that tritonserver's stub uses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

try:  # available only inside tritonserver
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - imported by unit tests outside Triton
    pb_utils = None


def group_by_shape(shapes: Sequence[tuple[tuple[int, ...], ...]]) -> list[list[int]]:
    """Indices of requests whose inputs agree on every axis but the batch axis, in arrival order."""
    groups: dict[tuple, list[int]] = {}
    for index, per_input in enumerate(shapes):
        key = tuple(s[1:] for s in per_input)
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def split_batch(stacked: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Undo the stacking: one array per request, in order."""
    bounds = np.cumsum(sizes)[:-1]
    return np.split(stacked, bounds, axis=0)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests: list) -> list:
        arrays = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names] for r in requests]
        responses: list = [None] * len(requests)
        for group in group_by_shape([tuple(a.shape for a in per) for per in arrays]):
            try:
                # One request (the usual case for a whole patient's slabs) is fed as is: no 50 MB copy.
                feed = {n: arrays[group[0]][k] if len(group) == 1 else
                        np.concatenate([arrays[i][k] for i in group], axis=0)
                        for k, n in enumerate(self.input_names)}
                results = self.session.run(self.output_names, feed)
                sizes = [arrays[i][0].shape[0] for i in group]
                pieces = [split_batch(r, sizes) for r in results]
                for j, i in enumerate(group):
                    tensors = [pb_utils.Tensor(n, np.ascontiguousarray(p[j]))
                               for n, p in zip(self.output_names, pieces, strict=True)]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            except Exception as exc:  # one bad group must not take the model down
                error = pb_utils.TritonError(f"onnxruntime failed: {exc}")
                for i in group:
                    responses[i] = pb_utils.InferenceResponse(error=error)
        return responses
