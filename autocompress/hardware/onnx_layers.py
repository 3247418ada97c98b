"""Read a network's layers from its exported ONNX graph, in the keys of ``layers.csv``.

BatchNorm after a conv is folded into it by the export (a stand-alone one, pre-activation, is a
``bn`` layer); an activation that is the only consumer of a layer's output is fused into it,
including the patterns torch exports for SiLU (``Sigmoid`` + ``Mul``) and GELU (``Div``,
``Erf``, ``Add``, ``Mul``, ``Mul``); reshapes, flattens and shape arithmetic (nodes whose
tensors all have rank <= 1, or whose inputs are all constants) are free; any other node is a layer
the tables cannot price (returned as ``OpType node-name``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from autocompress.hardware.layer_table import LayerKey, LayerSpec

ACTS = {"Relu": "relu", "Sigmoid": "sigmoid", "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish",
        "Tanh": "tanh", "LeakyRelu": "leakyrelu", "Clip": "clip", "Gelu": "gelu"}  # fmt: skip
# Reshape/Flatten/Squeeze only relabel a contiguous buffer in ONNX Runtime and OpenVINO (timed
# alone they cost under the timer's resolution); Transpose moves memory and is priced.
FREE = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Constant", "Shape", "Gather", "Dropout",
        "ConstantOfShape", "Cast", "Range"}  # fmt: skip
ELTWISE = {"Add": "add", "Sub": "add", "Div": "add", "Mul": "mul"}
RESIZE_MODES = {"nearest": "nearest", "linear": "bilinear", "cubic": "bicubic"}


def graph_inputs(model: onnx.ModelProto) -> list[tuple[str, list[int | str]]]:
    """Each input of the graph (initializers listed as inputs left out) with its dims: an int
    where the file fixes it, else the dimension's name (``"?"`` when it has none)."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        out.append((vi.name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]))
    return out


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's dims at batch 1: from ONNX shape inference, or, where it leaves a dimension
    unknown (slices and resizes computed from ``Shape``), by running the graph once. A tensor
    whose size past the batch axis stays unknown (the graph does not run, or its input size is
    dynamic) is left out: the nodes that read it are not priced rather than priced at a guess."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out: dict[str, list[int]] = {i.name: list(i.dims) for i in g.initializer}
    unsure: set[str] = set()
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
        if any(not d.HasField("dim_value") for d in list(dims)[1:]):
            unsure.add(vi.name)
    produced = {o for n in g.node for o in n.output if o}
    if unsure or produced - set(out):
        ran = _run_shapes(model)
        out.update(ran)
        for name in unsure - set(ran):
            del out[name]
    return out


def _run_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's dims from one run of the graph on zeros (a dynamic batch at 1); empty when
    an input's other dims are dynamic (any size would be a guess) or the graph does not run."""
    import onnxruntime as ort

    if any(isinstance(d, str) for _, dims in graph_inputs(model) for d in dims[1:]):
        return {}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for o in node.output:
            if o and o not in have:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
                have.add(o)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # a failed run is reported by the shapes it leaves unknown, not on stderr
    try:
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in sess.get_inputs():
            dims = [d if isinstance(d, int) else 1 for d in i.shape]
            feeds[i.name] = np.zeros(dims, dtype=np.float32)
        names = [o.name for o in sess.get_outputs()]
        return {n: list(np.shape(v)) for n, v in zip(names, sess.run(names, feeds), strict=True)}
    except Exception:  # noqa: BLE001 - shapes stay unknown; the affected nodes become unpriced
        return {}


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _axes(gr: _Graph, node: onnx.NodeProto, rank: int) -> set[int] | None:
    """The axes a Reduce* node reduces, from its ``axes`` attribute (opset < 18) or its second
    input (opset >= 18, a constant); all of them when neither is given; None when the input is
    computed at run time."""
    axes = _attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = gr.constant(node.input[1])
        if value is None:
            return None
        axes = [int(a) for a in value.reshape(-1)]
    if not axes:  # no axes: ``noop_with_empty_axes`` = 0 reduces all of them
        return None if _attr(node, "noop_with_empty_axes", 0) else set(range(rank))
    return {int(a) % rank for a in axes}


def _chw(dims: list[int]) -> tuple[int, int, int]:
    """(C, H, W) of an activation: rank 4 as is, rank 2 (N, C) as (C, 1, 1), others as
    (dims[1], product of the middle, dims[-1])."""
    if len(dims) == 4:
        return dims[1], dims[2], dims[3]
    if len(dims) == 2:
        return dims[1], 1, 1
    if len(dims) >= 3:
        return dims[1], math.prod(dims[2:-1]), dims[-1]
    raise ValueError(f"unsupported tensor rank {len(dims)}")


class _Graph:
    """The graph with its consumers, constants and shapes, and which nodes are already used."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.g = model.graph
        self.shapes = _shapes(model)
        self.consts = {i.name for i in self.g.initializer}
        for n in self.g.node:  # constants, shapes, and what is computed from them alone (no activation data)
            if n.op_type in ("Constant", "Shape") or all(i in self.consts or not i for i in n.input):
                self.consts.update(o for o in n.output if o)
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.g.output}
        self.absorbed: set[int] = set()

    def constant(self, t: str) -> np.ndarray | None:
        """The value of an initializer or of a ``Constant`` node's output (None for any other tensor)."""
        for i in self.g.initializer:
            if i.name == t:
                return numpy_helper.to_array(i)
        for n in self.g.node:
            if n.op_type == "Constant" and n.output and n.output[0] == t:
                a = next((a for a in n.attribute if a.name == "value"), None)
                return None if a is None else numpy_helper.to_array(a.t)
        return None

    def only(self, t: str) -> onnx.NodeProto | None:
        cons = self.consumers.get(t, [])
        return cons[0] if len(cons) == 1 and t not in self.outputs else None

    def const_other(self, node: onnx.NodeProto, t: str) -> bool:
        """``node`` is binary with ``t`` and a constant."""
        return (
            len(node.input) == 2 and t in node.input and any(i in self.consts for i in node.input if i != t)
        )

    def act_pattern(self, t: str, *, exclusive: bool,
                    start: onnx.NodeProto | None = None) -> tuple[str, list[onnx.NodeProto]] | None:  # fmt: skip
        """The activation applied to ``t`` (its name and nodes, first node first), when one is;
        ``exclusive``: only if nothing else reads ``t`` (so it can be fused into ``t``'s layer);
        ``start``: only the one that begins with this node."""
        if t in self.outputs and exclusive:
            return None
        cons = self.consumers.get(t, [])
        for first in cons if start is None else [start]:
            nodes: list[onnx.NodeProto] | None = None
            name = ""
            if first.op_type in ACTS:
                nodes, name = [first], _act_name(first)
            if first.op_type == "Sigmoid":
                mul = self.only(first.output[0])
                if mul is not None and mul.op_type == "Mul" and set(mul.input) == {t, first.output[0]}:
                    nodes, name = [first, mul], "silu"
            elif first.op_type == "Div" and self.const_other(first, t):
                nodes = self._gelu(t, first)
                name = "gelu" if nodes else ""
            if not nodes:
                continue
            if exclusive:
                readers = {id(n) for n in cons}
                if not readers <= {id(n) for n in nodes}:
                    return None
            return name, nodes
        return None

    def _gelu(self, t: str, div: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        """x -> Div(x, c) -> Erf -> Add(., 1) -> Mul(x, .) -> Mul(., 0.5), as torch exports GELU
        (the two Muls in either order)."""
        erf = self.only(div.output[0])
        if erf is None or erf.op_type != "Erf":
            return None
        add = self.only(erf.output[0])
        if add is None or add.op_type != "Add" or not self.const_other(add, erf.output[0]):
            return None
        m1 = self.only(add.output[0])
        if m1 is None or m1.op_type != "Mul":
            return None
        if t in m1.input:
            m2 = self.only(m1.output[0])
            if m2 is not None and m2.op_type == "Mul" and self.const_other(m2, m1.output[0]):
                return [div, erf, add, m1, m2]
            return None
        # 0.5 * (1 + erf) first, then times x
        if not self.const_other(m1, add.output[0]):
            return None
        m2 = self.only(m1.output[0])
        if m2 is not None and m2.op_type == "Mul" and t in m2.input:
            return [div, erf, add, m1, m2]
        return None

    def fuse(self, node: onnx.NodeProto) -> tuple[str, tuple[str, ...]]:
        """The activation fused into ``node``'s layer (absorbing its nodes) and the layer's nodes."""
        pat = self.act_pattern(node.output[0], exclusive=True)
        if pat is None:
            return "none", (node.name,)
        name, nodes = pat
        self.absorbed.update(id(n) for n in nodes)
        return name, (node.name, *(n.name for n in nodes))

    def free(self, node: onnx.NodeProto) -> bool:
        if node.op_type in FREE:
            return True
        if all(i in self.consts or not i for i in node.input):
            return True  # constant folding left it: computed once
        # shape arithmetic: vectors in, vectors out (an activation has a batch axis and a feature axis)
        tensors = [self.shapes.get(t) for t in [*node.input, *node.output] if t and t not in self.consts]
        return bool(tensors) and all(s is not None and len(s) <= 1 for s in tensors)


def extract_layers(path: str | Path) -> tuple[list[LayerSpec], list[str]]:
    """The priced layers of an exported (fp32) ONNX file, in graph order, and a description of
    every node the tables cannot price (``OpType node-name``)."""
    model = onnx.load(str(path))
    gr = _Graph(model)
    layers: list[LayerSpec] = []
    unknown: list[str] = []
    for node in gr.g.node:
        if id(node) in gr.absorbed or gr.free(node):
            continue
        try:
            found = _layer(gr, node)
        except (KeyError, ValueError, IndexError):
            found = None
        if found is None:
            unknown.append(f"{node.op_type} {node.name}")
            continue
        gr.absorbed.add(id(node))
        layers.append(LayerSpec(*found))
    return layers, unknown


def _key(op: str, chw: tuple[int, int, int], out_c: int | None = None, *, act: str = "none",
         **kw: Any) -> LayerKey:  # fmt: skip
    c, h, w = chw
    fields: dict[str, Any] = {"kernel": 1, "stride": 1, "groups": 1, **kw}
    return LayerKey(op, h, w, c, c if out_c is None else out_c, act=act, precision="fp32", **fields)


def _layer(gr: _Graph, node: onnx.NodeProto) -> tuple[LayerKey, tuple[str, ...]] | None:
    """The key of the layer ``node`` starts, with the nodes it covers; None when unpriced."""
    op, shapes = node.op_type, gr.shapes
    one = (node.name,)
    x = node.input[0] if node.input else ""
    standalone = gr.act_pattern(x, exclusive=False, start=node) if x else None
    if standalone is not None:
        gr.absorbed.update(id(n) for n in standalone[1])
        return _key("act", _chw(shapes[x]), act=standalone[0]), tuple(n.name for n in standalone[1])
    if op == "Conv":
        c, h, w = _chw(shapes[x])
        wdims = shapes[node.input[1]]
        k = int(wdims[2]) if len(wdims) == 4 else 1
        stride = int(_attr(node, "strides", [1])[0])
        act, nodes = gr.fuse(node)
        return LayerKey(
            "conv", h, w, c, int(wdims[0]), k, stride, int(_attr(node, "group", 1)), act, "fp32"
        ), nodes
    if op in ("Gemm", "MatMul"):
        a, b = shapes[x], shapes[node.input[1]]
        if node.input[1] in gr.consts or op == "Gemm":
            trans = op == "Gemm" and _attr(node, "transB", 0)
            out_c = int(b[0] if trans else b[-1])
            rows = math.prod(a[1:-1]) if len(a) > 2 else 1
            nodes: tuple[str, ...] = one
            bias = gr.only(node.output[0])
            if (
                op == "MatMul"
                and bias is not None
                and bias.op_type == "Add"
                and gr.const_other(bias, node.output[0])
            ):
                gr.absorbed.add(id(bias))  # nn.Linear on a rank > 2 input: MatMul + Add(bias)
                act, more = gr.fuse(bias)
                nodes = (node.name, *more)
            else:
                act, nodes = gr.fuse(node)
            return LayerKey("linear", rows, 1, int(a[-1]), out_c, 1, 1, 1, act, "fp32"), nodes
        batch = math.prod(a[1:-2]) if len(a) > 3 else 1
        act, nodes = gr.fuse(node)
        return _key("matmul", (int(a[-1]), int(a[-2]), batch), int(b[-1]), act=act), nodes
    if op in ("MaxPool", "AveragePool"):
        c, h, w = _chw(shapes[x])
        k = int(_attr(node, "kernel_shape", [1])[0])
        oc, oh, ow = _chw(shapes[node.output[0]])
        if oh == ow == 1 and k >= max(h, w):
            return _key("globalpool", (c, h, w), mode="max" if op == "MaxPool" else ""), one
        stride = int(_attr(node, "strides", [1])[0])
        pad = int(_attr(node, "pads", [0])[0])
        mode = "ceil" if _attr(node, "ceil_mode", 0) else ""
        kind = "maxpool" if op == "MaxPool" else "avgpool"
        return LayerKey(kind, h, w, c, c, k, stride, 1, "none", "fp32", pad=pad, mode=mode), one
    if op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"):
        dims = shapes[x]
        if op.startswith("Reduce"):
            if len(dims) != 4 or _axes(gr, node, len(dims)) != {2, 3}:
                return None
        return _key("globalpool", _chw(dims), mode="max" if "Max" in op else ""), one
    if op == "BatchNormalization":
        act, nodes = gr.fuse(node)
        return _key("bn", _chw(shapes[x]), act=act), nodes
    if op == "Concat":
        n = sum(1 for i in node.input if i and i not in gr.consts)
        act, nodes = gr.fuse(node)
        return _key("concat", _chw(shapes[node.output[0]]), inputs=n, act=act), nodes
    if op == "Split":
        return _key("split", _chw(shapes[x]), inputs=len(node.output)), one
    if op == "Slice":
        c, h, w = _chw(shapes[x])
        out = math.prod(shapes[node.output[0]])
        return _key("slice", (c, h, w), max(1, round(out / (h * w)))), one
    if op in ("Resize", "Upsample"):
        c, h, w = _chw(shapes[x])
        _, oh, _ = _chw(shapes[node.output[0]])
        mode = RESIZE_MODES.get(_attr(node, "mode", b"nearest").decode(), "nearest")
        up, down = (max(1, round(oh / h)), 1) if oh >= h else (1, max(1, round(h / oh)))
        return _key("resize", (c, h, w), stride=up, kernel=down, mode=mode), one
    if op == "Transpose":
        return _key("transpose", _chw(shapes[x])), one
    if op in ("Softmax", "LogSoftmax"):
        return _key("softmax", _chw(shapes[x]), mode="log" if op == "LogSoftmax" else ""), one
    if op in ELTWISE:
        a, b = shapes[node.input[0]], shapes[node.input[1]]
        if any(i in gr.consts for i in node.input) or a != b:
            big = a if math.prod(a) >= math.prod(b) else b
            return _key("scale", _chw(big)), one  # a broadcast operand (squeeze-excite, bias, constant)
        kind = ELTWISE[op]
        act, nodes = gr.fuse(node) if kind == "add" else ("none", one)
        return _key(kind, _chw(a), act=act), nodes
    return None


def _act_name(node: onnx.NodeProto) -> str:
    if node.op_type == "Clip":
        return "relu6" if len(node.input) >= 3 else "clip"
    return ACTS[node.op_type]
