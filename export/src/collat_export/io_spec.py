"""Names, shapes and dtypes of each network's tensors: the contract between ONNX, TensorRT and Triton.

Dims exclude the batch axis, as Triton's ``config.pbtxt`` writes them; -1 marks a dynamic
axis. 3D-MROD-Net takes any slice count and in-plane size (multiples of 32), so D, H and
W are dynamic; the U-Net always sees 16-slice slabs of the 128x128 MNI grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .networks import check_hypo_input, check_mrod_input
from .presets import Preset


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dims: tuple[int, ...]  # without the batch axis; -1 = dynamic
    dtype: str = "FP32"

    @property
    def dynamic_axes(self) -> list[int]:
        """Dynamic axes counted with the batch axis (0), as ONNX numbers them."""
        return [0] + [i + 1 for i, d in enumerate(self.dims) if d == -1]


@dataclass(frozen=True)
class NetworkIO:
    triton_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


TRITON_MODEL_NAMES = {"mrod": "mrod_net", "hypo": "hypoperfusion_unet"}


def network_io(preset: Preset) -> NetworkIO:
    g = preset.geometry
    if preset.model == "mrod":
        return NetworkIO(
            TRITON_MODEL_NAMES["mrod"],
            (TensorSpec("PERFUSION", (g.channels, -1, -1, -1)),),
            (TensorSpec("PHASES", (preset.config.phases, -1, -1, -1)),),  # type: ignore[union-attr]
        )
    return NetworkIO(
        TRITON_MODEL_NAMES["hypo"],
        (TensorSpec("IMAGE", (g.channels, g.slices, g.height, g.width)), TensorSpec("NIHSS", (1,))),
        (TensorSpec("LESION_PROB", (1, g.slices, g.height, g.width)),),
    )


def example_inputs(preset: Preset, batch: int = 1, seed: int = 0, *, slices: int | None = None,
                   height: int | None = None, width: int | None = None) -> dict[str, np.ndarray]:
    """Random inputs of the preset's geometry (or an override of MROD's dynamic axes)."""
    rng = np.random.default_rng(seed)
    g = preset.geometry
    if preset.model == "mrod":
        shape = (batch, g.channels, slices or g.slices, height or g.height, width or g.width)
        return {"PERFUSION": rng.uniform(-0.9, 0.9, size=shape).astype(np.float32)}
    image = rng.normal(1.0, 0.3, size=(batch, g.channels, g.slices, g.height, g.width)).astype(np.float32)
    nihss = rng.uniform(0.0, 2.0, size=(batch, 1)).astype(np.float32)
    return {"IMAGE": image, "NIHSS": nihss}


def validate_inputs(preset: Preset, inputs: dict[str, np.ndarray]) -> None:
    """Raise :class:`InputShapeError` with the rule before any convolution sees a bad shape."""
    if preset.model == "mrod":
        check_mrod_input(inputs["PERFUSION"].shape, preset.geometry.channels)
    else:
        check_hypo_input(inputs["IMAGE"].shape, inputs["NIHSS"].shape, preset.geometry.channels,
                         preset.geometry.slices)


def run_torch(network: torch.nn.Module, preset: Preset, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Forward pass in eval mode on validated numpy inputs, in the order :func:`network_io` names them."""
    validate_inputs(preset, inputs)
    names = [t.name for t in network_io(preset).inputs]
    network.eval()
    with torch.no_grad():
        return network(*(torch.from_numpy(inputs[n]) for n in names)).numpy()
