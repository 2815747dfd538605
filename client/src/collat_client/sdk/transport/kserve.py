"""KServe v2 binary tensor extension: request bodies and responses as bytes (pure functions, no I/O).

A request is a JSON header followed by the raw little-endian tensor bytes; the header's
length travels in ``Inference-Header-Content-Length``. BYTES elements are each prefixed by
their 4-byte little-endian length. The response mirrors it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
NUMPY_TYPES = {"FP32": np.float32, "FP64": np.float64, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
               "INT64": np.int64, "BOOL": np.bool_, "FP16": np.float16}


def datatype_of(array: np.ndarray) -> str:
    if array.dtype == np.object_ or array.dtype.kind in "SU":
        return "BYTES"
    for name, t in NUMPY_TYPES.items():
        if array.dtype == np.dtype(t):
            return name
    raise TypeError(f"no KServe datatype for numpy {array.dtype}")


def _bytes_tensor(array: np.ndarray) -> bytes:
    parts = []
    for item in np.asarray(array, dtype=np.object_).reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


@dataclass(frozen=True)
class RequestBody:
    """A request body as views of the caller's arrays: the JSON header, then each tensor's bytes.

    Nothing is joined: an upload streams ``chunks()`` (1 MiB views), which keeps a 100 MB series
    from being copied once more and sent as one giant write (measured against tritonserver 2.51:
    78 MB as one bytes object took 0.24-0.57 s, the same bytes in 1 MiB views 0.11-0.13 s).
    """

    parts: tuple[memoryview, ...]
    header_length: int

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def chunks(self, size: int = 1 << 20) -> Iterator[memoryview]:
        for part in self.parts:
            for offset in range(0, part.nbytes, size):
                yield part[offset: offset + size]

    def tobytes(self) -> bytes:
        return b"".join(self.parts)


def encode_request(inputs: dict[str, np.ndarray], outputs: list[str]) -> RequestBody:
    header_inputs, blobs = [], []
    for name, array in inputs.items():
        datatype = datatype_of(array)
        # A view, not a copy (unless the array is not contiguous little-endian already).
        raw = memoryview(_bytes_tensor(array)) if datatype == "BYTES" else memoryview(
            np.ascontiguousarray(array, dtype=np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<")).reshape(-1)
        ).cast("B")
        header_inputs.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                              "parameters": {"binary_data_size": raw.nbytes}})
        blobs.append(raw)
    header = json.dumps({"inputs": header_inputs,
                         "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs]}).encode()
    return RequestBody((memoryview(header), *blobs), len(header))


def _decode_bytes(raw: bytes, count: int) -> np.ndarray:
    out, offset = [], 0
    for _ in range(count):
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        out.append(raw[offset: offset + length])
        offset += length
    return np.array(out, dtype=np.object_)


def decode_response(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """Outputs by name from a binary (or plain JSON) inference response."""
    if header_length is None:
        header_length = len(body)
    header = json.loads(body[:header_length])
    offset = header_length
    result = {}
    for out in header.get("outputs", []):
        shape = tuple(int(s) for s in out["shape"])
        size = out.get("parameters", {}).get("binary_data_size")
        if size is None:  # JSON data
            data = out["data"]
            array = np.array(data, dtype=np.object_ if out["datatype"] == "BYTES" else NUMPY_TYPES[out["datatype"]])
            result[out["name"]] = array.reshape(shape)
            continue
        raw = body[offset: offset + int(size)]
        offset += int(size)
        if out["datatype"] == "BYTES":
            result[out["name"]] = _decode_bytes(raw, int(np.prod(shape))).reshape(shape)
        else:
            dtype = np.dtype(NUMPY_TYPES[out["datatype"]]).newbyteorder("<")
            result[out["name"]] = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return result
