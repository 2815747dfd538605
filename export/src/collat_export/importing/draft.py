"""A first network card drafted from an ONNX graph: what the graph says (names, ranks, fixed sizes) filled in, what
only its authors know (layout, channels, scaling, activation, ranges) guessed and marked CHECK."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from collat_contract.network_card import DIFFUSION_CHANNELS

from .adapter import NetworkImportError, _dims


def _layout(dims: list[int | None]) -> str:
    """Channels-last when the last axis is fixed and smaller than the second (Keras, tf2onnx): a guess to check."""
    last, second = dims[-1], dims[1]
    channels_last = last is not None and (second is None or last < second)
    if len(dims) == 4:
        return "NHWC" if channels_last else "NCHW"
    return "NDHWC" if channels_last else "NCDHW"


def _size(dims: list[int | None], layout: str, axis: str) -> int | None:
    return dims[layout.index(axis)] if axis in layout else None


def draft_card(network: Path, role: str, card_folder: Path) -> str:
    """The card's YAML text for ``network`` in ``role``."""
    try:
        model = onnx.load(str(network))
    except Exception as exc:  # noqa: BLE001 - not an ONNX file
        raise NetworkImportError(f"{network}: not a readable ONNX model ({str(exc).splitlines()[0][:200]})") from None
    weights = {i.name for i in model.graph.initializer}
    inputs = [(i.name, _dims(i)) for i in model.graph.input if i.name not in weights]
    outputs = [(o.name, _dims(o)) for o in model.graph.output]
    images = [(n, d) for n, d in inputs if len(d) in (4, 5)]
    if not images or not outputs:
        raise NetworkImportError(f"{network}: no 4D or 5D input or no output: not an image network")
    (image, image_dims), (output, output_dims) = images[0], outputs[0]
    layout, out_layout = _layout(image_dims), _layout(output_dims)
    relative = os.path.relpath(network.resolve(), card_folder.resolve())
    lines = ["card_version: 1", f"role: {role}", f"network: {relative}", f"name: {network.stem}",
             "intended_use: research", "inputs:"]
    if role == "hypoperfusion":
        count = _size(image_dims, layout, "C") or len(DIFFUSION_CHANNELS)
        channels = ", ".join(DIFFUSION_CHANNELS[:count]) if count <= len(DIFFUSION_CHANNELS) else "dwi, adc"
        lines.append(f"  image: {{name: {image}, layout: {layout}, channels: [{channels}]}}  # CHECK: layout, and "
                     "the channels in the network's order (dwi, adc, core, side)")
        scalars = [n for n, d in inputs if len(d) in (1, 2) and n != image]
        if scalars:
            lines.append(f"  nihss: {{name: {scalars[0]}, scale: 21}}  # CHECK: the network was fed NIHSS / scale")
        lines += ["outputs:", f"  lesion: {{name: {output}, layout: {out_layout}, activation: sigmoid}}  # CHECK: "
                  "none (logits), sigmoid, tanh or softmax (then channel: N)"]
        if len(image_dims) == 4:
            lines.append("context_slices: 1  # CHECK: neighbouring slices fed as channels (2.5D), odd")
        rows, cols = _size(image_dims, layout, "H"), _size(image_dims, layout, "W")
        if rows and cols and (rows, cols) != (128, 128):
            lines.append(f"inplane: [{rows}, {cols}]  # from the graph: the 128x128 MNI grid is cropped or padded")
    else:
        frames = _size(image_dims, layout, "C")
        lines += [f"  series: {{name: {image}, layout: {layout}, range: [-0.9, 0.9]}}  # CHECK: layout (C = frames) "
                  "and the range the network was fed inside the brain",
                  "outputs:", f"  phases: {{name: {output}, layout: {out_layout}, activation: none, range: [-1, 1], "
                  "order: [arterial, capillary, early_venous, late_venous, delay]}  # CHECK",
                  "modalities: [dce]  # CHECK: what it was trained on (dce, dsc)",
                  f"frames: {frames or 60}  # {'from the graph' if frames else 'CHECK: the graph leaves it free'}",
                  "frame_seconds: 1.6  # CHECK: the frame interval it was trained on"]
        rows, cols = _size(image_dims, layout, "H"), _size(image_dims, layout, "W")
        lines.append(f"inplane: [{rows or 128}, {cols or 128}]  # "
                     f"{'from the graph' if rows and cols else 'CHECK: the grid it was trained on'}")
        slices = _size(image_dims, layout, "D")
        lines.append(f"slices: {slices or 20}  # {'from the graph' if slices else 'CHECK: the grid it was trained on'}")
    return "\n".join(lines) + "\n"
