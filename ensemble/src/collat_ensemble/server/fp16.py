"""FP16 ONNX for strongly typed TensorRT builds, with normalization kept in FP32.

TensorRT 11 removed the builder's implicit precision flags: an engine runs each layer in
the type its ONNX tensors declare. So FP16 has to be written into the graph. Normalization
layers (batch norm's running variance can be tiny, its reciprocal large) stay in FP32
behind explicit casts, and the graph's inputs and outputs stay FP32 so that the Triton
contract does not change with the precision.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KEEP_FP32_OPS = frozenset({"BatchNormalization", "InstanceNormalization", "LayerNormalization",
                           "GroupNormalization"})


def _cast(src: str, dst: str, to: int, name: str) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [dst], to=to, name=name)


def _fp16_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    arr = numpy_helper.to_array(t)
    if np.any(np.abs(arr[np.isfinite(arr)]) > 65504):
        raise ValueError(f"tensor {t.name!r} holds values beyond the FP16 range")
    return numpy_helper.from_array(arr.astype(np.float16), t.name)


def _inline_initializer_identities(g: onnx.GraphProto) -> None:
    """Point consumers of ``Identity(initializer)`` at the initializer itself.

    The exporter deduplicates equal weights through Identity nodes; inlining them makes
    every layer's parameters visible as initializers, so their precision can be chosen.
    """
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    alias = {n.output[0]: n.input[0] for n in g.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    kept = [n for n in g.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in kept:
        n.input[:] = [alias.get(i, i) for i in n.input]
    del g.node[:]
    g.node.extend(kept)


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy whose compute runs in FP16 except for :data:`KEEP_FP32_OPS`."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    _inline_initializer_identities(g)
    float_inits = {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT}
    keep_inits = {i for n in g.node if n.op_type in KEEP_FP32_OPS for i in n.input if i in float_inits}
    # The exporter deduplicates equal initializers, so one tensor can feed a normalization
    # layer and an FP16 layer: those get an FP16 twin for the FP16 consumers.
    shared = {i for n in g.node if n.op_type not in KEEP_FP32_OPS for i in n.input if i in keep_inits}
    twins = {name: f"{name}__fp16" for name in shared}
    for t in list(g.initializer):
        if t.name in twins:
            twin = _fp16_tensor(t)
            twin.name = twins[t.name]
            g.initializer.append(twin)
        elif t.name in float_inits and t.name not in keep_inits:
            t.CopyFrom(_fp16_tensor(t))
    for n in g.node:
        if n.op_type not in KEEP_FP32_OPS:
            n.input[:] = [twins.get(i, i) for i in n.input]

    new_nodes: list[onnx.NodeProto] = []
    # Graph inputs arrive as FP32: cast once, right at the entrance.
    renamed: dict[str, str] = {}
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT and inp.name not in float_inits:
            renamed[inp.name] = f"{inp.name}__fp16"
            new_nodes.append(_cast(inp.name, renamed[inp.name], TensorProto.FLOAT16, f"{inp.name}__to_fp16"))
    outputs = {o.name for o in g.output}
    for node in g.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(_fp16_tensor(attr.t))
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
        if node.op_type in KEEP_FP32_OPS:
            x, y = node.input[0], node.output[0]
            new_nodes.append(_cast(x, f"{x}__fp32_{node.name}", TensorProto.FLOAT, f"{node.name}__in_fp32"))
            node.input[0] = f"{x}__fp32_{node.name}"
            node.output[0] = f"{y}__fp32"
            new_nodes.append(node)
            new_nodes.append(_cast(f"{y}__fp32", y, TensorProto.FLOAT16, f"{node.name}__out_fp16"))
            continue
        new_nodes.append(node)
    # Graph outputs leave as FP32.
    for node in list(new_nodes):
        for k, o in enumerate(node.output):
            if o in outputs:
                node.output[k] = f"{o}__fp16"
                new_nodes.append(_cast(node.output[k], o, TensorProto.FLOAT, f"{o}__to_fp32"))
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]
    return onnx.shape_inference.infer_shapes(m, strict_mode=True)
