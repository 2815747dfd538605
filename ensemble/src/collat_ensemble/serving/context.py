"""The JSON context a preprocessing step hands to its postprocessing step through the ensemble.

Triton ensembles pass tensors only, so the geometry needed to put network outputs back on
the input's grid (affines, orientation, shapes), the clinical inputs and the timings so far
travel as one UTF-8 JSON BYTES tensor. Floats of affines survive the round trip exactly
(``json`` writes the shortest repr that reads back to the same double).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from ..errors import InputValidationError
from ..geometry import Orientation
from ..preprocess import PerfusionGrid

# The pip-installed tritonserver's Python-backend stub (nvidia-pytriton 0.7.0) was compiled against numpy 1.x: with
# numpy 2 in the environment it starts, reports ready, and misreads every request's tensors (seen here: "the series
# is constant" for every valid scan). The launcher passes the stub's numpy major version on in this variable.
STUB_NUMPY_VARIABLE = "COLLAT_STUB_NUMPY_MAJOR"


def numpy_mismatch(installed: str, stub_major: int | None) -> str | None:
    """Why the installed numpy cannot serve with a stub built for ``stub_major`` (None: not known, no check)."""
    major = int(installed.split(".")[0])
    if stub_major is None or major <= stub_major:
        return None
    return (f"numpy {installed} is installed, but the pip-installed tritonserver's Python-backend stub "
            f"(nvidia-pytriton 0.7.0) was built for numpy {stub_major}.x and would misread every request's "
            f"tensors: install numpy<{stub_major + 1} in this environment (pip install 'numpy<{stub_major + 1}')")


def encode(context: dict[str, Any]) -> np.ndarray:
    """A ``[1]`` object array holding the UTF-8 JSON, as Triton's BYTES tensors want it."""
    return np.array([json.dumps(context, separators=(",", ":")).encode("utf-8")], dtype=np.object_)


def decode(tensor: np.ndarray, what: str = "context") -> dict[str, Any]:
    """Read a ``[1]`` BYTES tensor of UTF-8 JSON (an object)."""
    flat = np.asarray(tensor).reshape(-1)
    if flat.size != 1:
        raise InputValidationError(f"{what} must hold exactly one JSON document, got {flat.size} elements")
    raw = flat[0]
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray | np.bytes_) else str(raw)
        value = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputValidationError(f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputValidationError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def read_affine(value: np.ndarray, what: str) -> np.ndarray:
    """A 4x4 FP64 affine from a request tensor (its content is checked by the science functions)."""
    affine = np.asarray(value, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputValidationError(f"{what} must be 4x4, got shape {affine.shape}")
    return affine


def orientation_to_dict(o: Orientation) -> dict[str, list]:
    return {"axes": list(o.axes), "flips": list(o.flips)}


def orientation_from_dict(d: dict) -> Orientation:
    return Orientation(tuple(int(a) for a in d["axes"]), tuple(bool(f) for f in d["flips"]))  # type: ignore[arg-type]


def orientation_code(o: Orientation) -> str:
    """Three-letter code of the stored axes (nibabel's convention: the direction each axis runs towards)."""
    letters = [("R", "L"), ("A", "P"), ("S", "I")]
    code = [""] * 3
    for world, stored in enumerate(o.axes):
        code[stored] = letters[world][1] if o.flips[world] else letters[world][0]
    return "".join(code)


def grid_to_dict(grid: PerfusionGrid) -> dict[str, Any]:
    return {"input_shape": list(grid.input_shape), "orientation": orientation_to_dict(grid.orientation),
            "ras_affine": grid.ras_affine.tolist(), "ras_shape": list(grid.ras_shape),
            "grid_affine": grid.grid_affine.tolist(), "grid_shape": list(grid.grid_shape)}


def grid_from_dict(d: dict[str, Any]) -> PerfusionGrid:
    return PerfusionGrid(tuple(d["input_shape"]), orientation_from_dict(d["orientation"]),
                         np.array(d["ras_affine"], dtype=np.float64), tuple(d["ras_shape"]),
                         np.array(d["grid_affine"], dtype=np.float64), tuple(d["grid_shape"]))


class StepTimer:
    """Wall-clock milliseconds of one step, plus the gap since the previous step finished.

    The gap between a preprocessing step's end and its postprocessing step's start is the
    time the request spent queued for and running in the network (Triton's own statistics
    split it further); it is reported as such.
    """

    def __init__(self) -> None:
        self.start = time.time()

    def elapsed_ms(self) -> float:
        return round((time.time() - self.start) * 1000.0, 2)

    @staticmethod
    def now() -> float:
        return time.time()
