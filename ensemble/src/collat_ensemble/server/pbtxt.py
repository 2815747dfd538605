"""Blocks of Triton's ``config.pbtxt`` text format.

The text is written by hand rather than through protobuf so that the server side does not
depend on tritonclient; the tests parse every generated file with Triton's own schema.
"""

from __future__ import annotations

from collat_contract.tensors import TensorSpec


def tensor_block(specs: tuple[TensorSpec, ...]) -> str:
    """``input``/``output`` entries of a config.pbtxt."""
    out = []
    for t in specs:
        shown = ", ".join(str(d) for d in t.dims)
        out.append(f'  {{\n    name: "{t.name}"\n    data_type: {t.config_type}\n    dims: [ {shown} ]\n  }}')
    return ",\n".join(out)


def parameters_block(values: dict[str, str]) -> str:
    rows = [f'  {{\n    key: "{k}"\n    value: {{ string_value: "{v}" }}\n  }}' for k, v in values.items()]
    return "parameters [\n" + ",\n".join(rows) + "\n]"


def instance_group(count: int, kind: str) -> str:
    return f"instance_group [\n  {{\n    count: {count}\n    kind: {kind}\n  }}\n]"
