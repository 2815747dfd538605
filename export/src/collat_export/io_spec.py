"""Each network's tensors for a preset, and inputs to run it on.

The names, dims and dtypes are the shared contract's (:func:`collat_contract.tensors.mrod_io`
and :func:`~collat_contract.tensors.unet_io`); a preset only fills in its geometry. 3D-MROD-Net
takes any slice count and in-plane size (multiples of 32), so D, H and W are dynamic; the
U-Net always sees 16-slice slabs of the 128x128 MNI grid.
"""

from __future__ import annotations

import numpy as np
import torch

from collat_contract.tensors import NetworkIO, mrod_io, unet_io
from collat_ensemble.serving.perfusion import NetworkGrid

from .networks import check_hypo_input, check_mrod_input
from .networks.mrod import SPATIAL_MULTIPLE
from .presets import Preset


def network_io(preset: Preset) -> NetworkIO:
    g = preset.geometry
    if preset.model == "mrod":
        return mrod_io(g.channels, preset.config.phases)  # type: ignore[union-attr]
    return unet_io(g.channels, g.slices, g.height, g.width)


def inplane_pool(preset: Preset) -> int:
    """How much a 3D-MROD-Net shrinks H and W before its encoder (a fine preset's coarse path), else 1."""
    cfg = preset.config
    return round(1 / cfg.coarse_scale[-1]) if getattr(cfg, "fine_channels", 0) else 1  # type: ignore[union-attr]


def spatial_multiple(preset: Preset) -> int:
    """What a 3D-MROD-Net's H and W must be multiples of."""
    return SPATIAL_MULTIPLE * inplane_pool(preset)


def perfusion_grid(preset: Preset) -> NetworkGrid:
    """The grid preprocess_perfusion must produce for a 3D-MROD-Net preset."""
    g = preset.geometry
    return NetworkGrid(g.channels, float(g.frame_seconds or 0.0), g.slices, g.height, g.width)


def example_inputs(preset: Preset, batch: int = 1, seed: int = 0, *, slices: int | None = None,
                   height: int | None = None, width: int | None = None) -> dict[str, np.ndarray]:
    """Random inputs of the preset's geometry (or an override of MROD's dynamic axes)."""
    rng = np.random.default_rng(seed)
    g = preset.geometry
    if preset.model == "mrod":
        shape = (batch, g.channels, slices or g.slices, height or g.height, width or g.width)
        return {network_io(preset).inputs[0].name: rng.uniform(-0.9, 0.9, size=shape).astype(np.float32)}
    image = rng.normal(1.0, 0.3, size=(batch, g.channels, g.slices, g.height, g.width)).astype(np.float32)
    nihss = rng.uniform(0.0, 2.0, size=(batch, 1)).astype(np.float32)
    return {"IMAGE": image, "NIHSS": nihss}


def validate_inputs(preset: Preset, inputs: dict[str, np.ndarray]) -> None:
    """Raise :class:`InputShapeError` with the rule before any convolution sees a bad shape."""
    if preset.model == "mrod":
        check_mrod_input(inputs[network_io(preset).inputs[0].name].shape, preset.geometry.channels,
                         inplane_pool(preset))
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
