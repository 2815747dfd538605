"""A network someone else trained, wrapped in ONNX so that it takes and gives what the served steps do.

The steps feed 3D-MROD-Net ``MROD_INPUT [N, T, D, H, W]`` in [-0.9, 0.9] and read ``PHASES [N, 5, D, H, W]`` in
[-1, 1]; they feed the U-Net ``IMAGE [N, 4, 16, 128, 128]`` (DWI, ADC, core, side) with ``NIHSS [N, 1]`` = NIHSS /
21 and read ``LESION_PROB [N, 1, 16, 128, 128]``. The wrapper adds, around the imported graph, the few operators its
card asks for: picking and ordering channels, scaling, transposing to its layout, folding slices into the batch for
a 2D network (with neighbouring slices as channels for a 2.5D one), cropping or padding the in-plane grid, and, on
the way out, undoing the activation and the value range. Because the adaptation is part of the graph, every target
(the Python-backend runtimes, Triton's OpenVINO and ONNX Runtime backends, TensorRT) serves an imported network
exactly as it serves the built-in ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from collat_contract.names import PHASE_NAMES
from collat_contract.network_card import DIFFUSION_CHANNELS, PERFUSION_RANGE, NetworkCard

CANONICAL = "NCDHW"
UNET_CHANNELS, UNET_SLAB, UNET_INPLANE = len(DIFFUSION_CHANNELS), 16, (128, 128)
MNI_BRAIN_INPLANE = (109, 91)  # the MNI 2 mm grid's rows (y) and columns (x), centred in UNET_INPLANE
NIHSS_FED_SCALE = 21.0  # the diffusion step feeds NIHSS / 21
MIN_OPSET = 13
SERVED_NAMES = frozenset(("IMAGE", "NIHSS", "LESION_PROB", "MROD_INPUT", "PHASES"))  # the wrapper's own tensors


class NetworkImportError(ValueError):
    """A network that cannot be served as its card describes it (the message names the problem)."""


@dataclass
class Geometry:
    """The sizes the served steps must produce for the imported network."""

    channels: int
    slices: int
    height: int
    width: int
    frame_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"channels": self.channels, "slices": self.slices, "height": self.height, "width": self.width,
                **({"frame_seconds": self.frame_seconds} if self.frame_seconds else {}), **self.extra}


class _Graph:
    """Nodes and constants added around the imported graph, under one prefix so that no name collides."""

    def __init__(self, prefix: str = "collat_adapter/") -> None:
        self.prefix, self.nodes, self.constants, self.count = prefix, [], [], 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def const(self, value: np.ndarray | list, dtype=np.int64) -> str:
        name = self.fresh("const")
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        out = output or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.fresh(op_type), **attrs))
        return out

    def shape_part(self, tensor: str, start: int, end: int) -> str:
        return self.op("Slice", [self.op("Shape", [tensor]), self.const([start]), self.const([end]), self.const([0])])

    def transpose(self, tensor: str, source: str, target: str, output: str | None = None) -> str:
        perm = [source.index(axis) for axis in target]
        if perm == list(range(len(perm))):
            return self.op("Identity", [tensor], output) if output else tensor
        return self.op("Transpose", [tensor], output, perm=perm)

    def affine(self, tensor: str, scale: float, offset: float) -> str:
        if scale != 1.0:
            tensor = self.op("Mul", [tensor, self.const(np.float32(scale), np.float32)])
        if offset != 0.0:
            tensor = self.op("Add", [tensor, self.const(np.float32(offset), np.float32)])
        return tensor


def _dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    """Static sizes of a graph tensor; None where the axis is free."""
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def _by_name(items, what: str, key: str, name: str, where: str) -> onnx.ValueInfoProto:
    found = {i.name: i for i in items}
    if name not in found:
        raise NetworkImportError(f"{key}: the network has no {what} {name!r} ({where} has {', '.join(sorted(found))})")
    return found[name]


def check_graph(model: onnx.ModelProto, card: NetworkCard) -> dict[str, list[int | None]]:
    """The card's tensors exist with the ranks their layouts say; every other input is a weight. Returns each card
    tensor's static sizes in the network's own layout."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise NetworkImportError(f"opset {opset} is too old: export the network with opset {MIN_OPSET} or newer")
    weights = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in weights]
    sizes = {}
    for role, ref in card.inputs.items():
        info = _by_name(graph_inputs, "input", f"inputs.{role}.name", ref.name, "it")
        sizes[role] = _dims(info)
        rank = len(ref.layout) if ref.layout else None
        if role == "nihss":
            if len(sizes[role]) not in (1, 2):
                raise NetworkImportError(f"inputs.nihss: {ref.name!r} has rank {len(sizes[role])}, not [N] or [N, 1]")
        elif len(sizes[role]) != rank:
            raise NetworkImportError(f"inputs.{role}.layout: {ref.layout} has {rank} axes but {ref.name!r} has "
                               f"{len(sizes[role])}")
    named = {ref.name for ref in card.inputs.values()}
    unnamed = [i.name for i in graph_inputs if i.name not in named]
    if unnamed:
        raise NetworkImportError(f"inputs: the network's input {unnamed[0]!r} is not named in the card")
    for role, ref in card.outputs.items():
        info = _by_name(model.graph.output, "output", f"outputs.{role}.name", ref.name, "it")
        sizes[role] = _dims(info)
        if len(sizes[role]) != len(ref.layout):
            raise NetworkImportError(f"outputs.{role}.layout: {ref.layout} has {len(ref.layout)} axes but {ref.name!r} "
                               f"has {len(sizes[role])}")
    return sizes


def _axis(sizes: list[int | None], layout: str, axis: str) -> int | None:
    return sizes[layout.index(axis)] if axis in layout else None


def _agree(key: str, name: str, graph: int | None, wanted: int, why: str) -> None:
    if graph is not None and graph != wanted:
        raise NetworkImportError(f"{key}: {name} is {graph} in the network but {wanted} here ({why})")


def geometry(card: NetworkCard, sizes: dict[str, list[int | None]]) -> Geometry:
    """The grid the steps produce for the network: fixed sizes from the graph, free ones from the card."""
    if card.role == "hypoperfusion":
        ref, got = card.inputs["image"], sizes["image"]
        wanted = len(ref.channels) * card.context_slices
        _agree("inputs.image.channels", "the channel axis", _axis(got, ref.layout, "C"), wanted,
               f"{len(ref.channels)} channels x {card.context_slices} slices")
        _agree("inputs.image.layout", "the slab depth", _axis(got, ref.layout, "D"), UNET_SLAB,
               "the diffusion step feeds 16-slice slabs")
        rows, cols = card.inplane or (_axis(got, ref.layout, "H") or UNET_INPLANE[0],
                                      _axis(got, ref.layout, "W") or UNET_INPLANE[1])
        for axis, value in (("H", rows), ("W", cols)):
            _agree("inplane", f"axis {axis}", _axis(got, ref.layout, axis), value, "the card's inplane")
        if rows < MNI_BRAIN_INPLANE[0] or cols < MNI_BRAIN_INPLANE[1]:
            raise NetworkImportError(f"inplane: {rows}x{cols} would cut into the brain: the MNI 2 mm grid's brain "
                                     f"spans {MNI_BRAIN_INPLANE[0]}x{MNI_BRAIN_INPLANE[1]} (rows x columns)")
        return Geometry(UNET_CHANNELS, UNET_SLAB, *UNET_INPLANE,
                        extra={"network_inplane": [rows, cols], "volume_slices": 60})
    ref, got = card.inputs["series"], sizes["series"]
    _agree("frames", "the channel axis", _axis(got, ref.layout, "C"), (card.frames or 0) * card.context_slices,
           f"{card.frames} frames x {card.context_slices} slices")
    slices = card.slices or _axis(got, ref.layout, "D") or 20
    _agree("slices", "the slice axis", _axis(got, ref.layout, "D"), slices, "the card's slices")
    if card.inplane is None and None in (_axis(got, ref.layout, "H"), _axis(got, ref.layout, "W")):
        raise NetworkImportError("inplane: missing: the network leaves its rows and columns free; say which grid "
                           "[rows, columns] it was trained on")
    rows, cols = card.inplane or (_axis(got, ref.layout, "H"), _axis(got, ref.layout, "W"))
    for axis, value in (("H", rows), ("W", cols)):
        _agree("inplane", f"axis {axis}", _axis(got, ref.layout, axis), value, "the card's inplane")
    phases = _axis(sizes["phases"], card.outputs["phases"].layout, "C")
    _agree("outputs.phases.layout", "the phase axis", phases, len(PHASE_NAMES), "five phases")
    return Geometry(card.frames or 0, slices, rows, cols, card.frame_seconds)


def _fold_slices(g: _Graph, x: str, channels: int, context: int) -> str:
    """[N, C, D, H, W] -> [N*D, C*context, H, W]: each slice a 2D sample, with its neighbours (edges repeated) as
    channels, channel by channel."""
    if context > 1:
        r = context // 2
        padded = g.op("Pad", [x, g.const([0, 0, r, 0, 0, 0, 0, r, 0, 0])], mode="edge")
        depth = g.shape_part(x, 2, 3)
        views = [g.op("Unsqueeze", [g.op("Slice", [padded, g.const([j]), g.op("Add", [depth, g.const([j])]),
                                                   g.const([2])]), g.const([2])]) for j in range(context)]
        stacked = g.op("Concat", views, axis=2)  # [N, C, k, D, H, W]
        x = g.op("Reshape", [stacked, g.op("Concat", [g.shape_part(x, 0, 1), g.const([channels * context]),
                                                      g.shape_part(x, 2, 5)], axis=0)])
    per_slice = g.op("Transpose", [x], perm=[0, 2, 1, 3, 4])  # [N, D, C', H, W]
    return g.op("Reshape", [per_slice, g.op("Concat", [g.const([-1]), g.shape_part(per_slice, 2, 5)], axis=0)])


def _unfold_slices(g: _Graph, y: str, reference: str) -> str:
    """[N*D, C, H, W] -> [N, C, D, H, W], N and D read from the canonical input ``reference``."""
    n, d = g.shape_part(reference, 0, 1), g.shape_part(reference, 2, 3)
    grouped = g.op("Reshape", [y, g.op("Concat", [n, d, g.shape_part(y, 1, 4)], axis=0)])
    return g.op("Transpose", [grouped], perm=[0, 2, 1, 3, 4])


def _to_network(g: _Graph, x: str, ref_layout: str, channels: int, context: int, output: str) -> str:
    """A canonical NCDHW tensor into the network's layout (a 2D layout folds the slices into the batch)."""
    if "D" not in ref_layout:
        return g.transpose(_fold_slices(g, x, channels, context), "NCHW", ref_layout, output)
    return g.transpose(x, CANONICAL, ref_layout, output)


def _from_network(g: _Graph, y: str, layout: str, reference: str) -> str:
    if "D" not in layout:
        return _unfold_slices(g, g.transpose(y, layout, "NCHW"), reference)
    return g.transpose(y, layout, CANONICAL)


def _inplane(g: _Graph, x: str, source: tuple[int, int], target: tuple[int, int]) -> str:
    """Centre-crop or zero-pad the last two axes of an NCDHW tensor from ``source`` to ``target``."""
    for axis, (have, want) in zip((3, 4), zip(source, target, strict=True), strict=True):
        if want < have:
            start = (have - want) // 2
            x = g.op("Slice", [x, g.const([start]), g.const([start + want]), g.const([axis])])
        elif want > have:
            before = (want - have) // 2
            pads = [0] * 10
            pads[axis], pads[5 + axis] = before, want - have - before
            x = g.op("Pad", [x, g.const(pads)])
    return x


def _lesion_probability(g: _Graph, y: str, activation: str, channels: int | None, channel: int) -> str:
    """[N, C, D, H, W] network output -> [N, 1, D, H, W] probability of the lesion."""
    many = channels is not None and channels > 1
    if activation == "none":
        y = g.op("Softmax", [y], axis=1) if many else g.op("Sigmoid", [y])
    elif activation == "tanh":
        y = g.affine(y, 0.5, 0.5)
    if many or activation == "softmax":
        y = g.op("Gather", [y, g.const([channel])], axis=1)
    return y


def _float_tensor(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def adapt(model: onnx.ModelProto, card: NetworkCard, sizes: dict[str, list[int | None]], geo: Geometry,
          ) -> onnx.ModelProto:
    """The imported graph with canonical inputs and outputs (names from the contract) around it."""
    model, card = _renamed(model, card)
    graph, g = model.graph, _Graph()
    card_names = {ref.name for ref in (*card.inputs.values(), *card.outputs.values())}
    if card.role == "hypoperfusion":
        ref = card.inputs["image"]
        inputs = [_float_tensor("IMAGE", ["n", UNET_CHANNELS, UNET_SLAB, *UNET_INPLANE]),
                  _float_tensor("NIHSS", ["n", 1])]
        x = g.op("Gather", ["IMAGE", g.const([DIFFUSION_CHANNELS.index(c) for c in ref.channels])], axis=1)
        inplane = tuple(geo.extra["network_inplane"])
        x = _inplane(g, x, UNET_INPLANE, inplane)
        _to_network(g, x, ref.layout, len(ref.channels), card.context_slices, ref.name)
        if "nihss" in card.inputs:
            nihss = g.affine("NIHSS", NIHSS_FED_SCALE / card.inputs["nihss"].scale, 0.0)
            if card.is_2d:  # one value per slice
                per = g.op("Expand", [g.op("Unsqueeze", [nihss, g.const([1])]),
                                      g.op("Concat", [g.shape_part("IMAGE", 0, 1), g.const([UNET_SLAB, 1])], axis=0)])
                nihss = g.op("Reshape", [per, g.const([-1, 1])])
            rank = len(sizes["nihss"])
            g.op("Reshape", [nihss, g.const([-1] if rank == 1 else [-1, 1])], card.inputs["nihss"].name)
        out = card.outputs["lesion"]
        y = _from_network(g, out.name, out.layout, "IMAGE")
        y = _lesion_probability(g, y, out.activation, _axis(sizes["lesion"], out.layout, "C"), out.channel)
        y = _inplane(g, y, inplane, UNET_INPLANE)
        g.op("Identity", [y], "LESION_PROB")
        outputs = [_float_tensor("LESION_PROB", ["n", 1, UNET_SLAB, *UNET_INPLANE])]
    else:
        ref = card.inputs["series"]
        inputs = [_float_tensor("MROD_INPUT", ["n", geo.channels, "d", "h", "w"])]
        low, high = ref.value_range or PERFUSION_RANGE
        span = (high - low) / (PERFUSION_RANGE[1] - PERFUSION_RANGE[0])
        x = g.affine("MROD_INPUT", span, low - PERFUSION_RANGE[0] * span)
        _to_network(g, x, ref.layout, geo.channels, card.context_slices, ref.name)
        out = card.outputs["phases"]
        y = _from_network(g, out.name, out.layout, "MROD_INPUT")
        if tuple(out.order) != PHASE_NAMES:
            y = g.op("Gather", [y, g.const([out.order.index(p) for p in PHASE_NAMES])], axis=1)
        low, high = out.value_range or (-1.0, 1.0)
        y = g.affine(y, 2.0 / (high - low), -1.0 - 2.0 * low / (high - low))
        g.op("Identity", [y], "PHASES")
        outputs = [_float_tensor("PHASES", ["n", len(PHASE_NAMES), "d", "h", "w"])]
    kept_inputs = [i for i in graph.input if i.name not in card_names]  # old-style weights listed as inputs
    split = _split(g.nodes, card)
    wrapped = helper.make_graph(
        [*g.nodes[:split], *graph.node, *g.nodes[split:]], f"collat_{card.role}",
        inputs + kept_inputs, outputs, initializer=[*graph.initializer, *g.constants],
        value_info=list(graph.value_info))
    result = helper.make_model(wrapped, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    result.functions.extend(model.functions)
    return result


def _renamed(model: onnx.ModelProto, card: NetworkCard) -> tuple[onnx.ModelProto, NetworkCard]:
    """A copy of the graph in which any tensor named like a served one (a network exported by this project keeps
    ``IMAGE``, ``PHASES``, ...) is renamed ``network/<name>``, and the card to match."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    used = {n for node in graph.node for n in (*node.input, *node.output)} | {
        i.name for i in (*graph.input, *graph.output, *graph.value_info, *graph.initializer)}
    names = {n: f"network/{n}" for n in used & SERVED_NAMES}
    if not names:
        return model, card
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for item in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        item.name = names.get(item.name, item.name)
    rename = lambda refs: {k: replace(r, name=names.get(r.name, r.name)) for k, r in refs.items()}  # noqa: E731
    return model, replace(card, inputs=rename(card.inputs), outputs=rename(card.outputs))


def _split(nodes: list[onnx.NodeProto], card: NetworkCard) -> int:
    """Where the adapter's input nodes end and its output nodes begin (the graph must stay topologically sorted):
    after the last node that writes one of the network's inputs."""
    fed = {ref.name for ref in card.inputs.values()}
    return max(i for i, node in enumerate(nodes) if fed & set(node.output)) + 1
