"""Read a network's layers from its exported ONNX graph, in the keys of ``layers.csv``.

BatchNorm is folded into the convs by the export, an activation that is the only consumer of a
layer's output is fused into it, reshapes and flattens are free, and any other node is a layer
the tables cannot price (returned as ``OpType node-name``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from autocompress.hardware.layer_table import LayerKey, LayerSpec

ACTS = {"Relu": "relu", "Sigmoid": "sigmoid", "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish",
        "Tanh": "tanh", "LeakyRelu": "leakyrelu", "Clip": "clip"}  # fmt: skip
FREE = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Constant", "Shape", "Gather", "Dropout"}


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out: dict[str, list[int]] = {i.name: list(i.dims) for i in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = dims
    return out


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _chw(dims: list[int]) -> tuple[int, int, int]:
    if len(dims) == 4:
        return dims[1], dims[2], dims[3]
    if len(dims) == 2:
        return dims[1], 1, 1
    raise ValueError(f"unsupported tensor rank {len(dims)}")


def extract_layers(path: str | Path) -> tuple[list[LayerSpec], list[str]]:
    """The priced layers of an exported (fp32) ONNX file, in graph order, and a description of
    every node the tables cannot price (``OpType node-name``)."""
    model = onnx.load(str(path))
    shapes = _shapes(model)
    g = model.graph
    inits = {i.name for i in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    absorbed: set[int] = set()
    layers: list[LayerSpec] = []
    unknown: list[str] = []

    def fuse(node: onnx.NodeProto) -> tuple[str, tuple[str, ...]]:
        t = node.output[0]
        cons = consumers.get(t, [])
        if len(cons) == 1 and t not in outputs and cons[0].op_type in ACTS:
            act = cons[0]
            absorbed.add(id(act))
            return _act_name(act), (node.name, act.name)
        return "none", (node.name,)

    for node in g.node:
        if id(node) in absorbed or node.op_type in FREE:
            continue
        op = node.op_type
        try:
            if op == "Conv":
                c, h, w = _chw(shapes[node.input[0]])
                wdims = shapes[node.input[1]]
                k = int(wdims[2]) if len(wdims) == 4 else 1
                stride = int(_attr(node, "strides", [1])[0])
                act, nodes = fuse(node)
                key = LayerKey(
                    "conv", h, w, c, int(wdims[0]), k, stride, int(_attr(node, "group", 1)), act, "fp32"
                )
            elif op in ("Gemm", "MatMul"):
                c, _, _ = _chw(shapes[node.input[0]])
                wdims = shapes[node.input[1]]
                trans = op == "Gemm" and _attr(node, "transB", 0)
                out_c = int(wdims[0] if trans else wdims[-1])
                act, nodes = fuse(node)
                key = LayerKey("linear", 1, 1, c, out_c, 1, 1, 1, act, "fp32")
            elif op in ("MaxPool", "AveragePool"):
                c, h, w = _chw(shapes[node.input[0]])
                k = int(_attr(node, "kernel_shape", [1])[0])
                stride = int(_attr(node, "strides", [1])[0])
                key = LayerKey(
                    "maxpool" if op == "MaxPool" else "avgpool", h, w, c, c, k, stride, 1, "none", "fp32"
                )
                nodes = (node.name,)
            elif op == "GlobalAveragePool" or (
                op == "ReduceMean" and len(shapes.get(node.output[0], [])) in (2, 4)
            ):
                c, h, w = _chw(shapes[node.input[0]])
                key = LayerKey("globalpool", h, w, c, c, 1, 1, 1, "none", "fp32")
                nodes = (node.name,)
            elif op in ("Add", "Mul") and (op == "Mul" or not any(i in inits for i in node.input)):
                a, b = shapes[node.input[0]], shapes[node.input[1]]
                if a == b:
                    c, h, w = _chw(a)
                    kind = "add" if op == "Add" else "mul"
                    act, nodes = fuse(node) if op == "Add" else ("none", (node.name,))
                elif op == "Mul" and len(a) == len(b) == 4:
                    big = a if a[2] * a[3] >= b[2] * b[3] else b
                    c, h, w = _chw(big)
                    kind, act, nodes = "scale", "none", (node.name,)
                else:
                    raise ValueError("broadcast")
                key = LayerKey(kind, h, w, c, c, 1, 1, 1, act, "fp32")
            elif op in ACTS:
                c, h, w = _chw(shapes[node.input[0]])
                key = LayerKey("act", h, w, c, c, 1, 1, 1, _act_name(node), "fp32")
                nodes = (node.name,)
            else:
                unknown.append(f"{op} {node.name}")
                continue
        except (KeyError, ValueError, IndexError):
            unknown.append(f"{op} {node.name}")
            continue
        layers.append(LayerSpec(key, nodes))
    return layers, unknown


def _act_name(node: onnx.NodeProto) -> str:
    if node.op_type == "Clip":
        return "relu6" if len(node.input) >= 3 else "clip"
    return ACTS[node.op_type]
