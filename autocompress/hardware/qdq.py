"""Measure what entering and leaving int8 costs on this machine: a QuantizeLinear (float
activation to int8) and a DequantizeLinear (int8 back to float) timed alone on activation
tensors of the table's shapes, each as a graph of 1 copy and of ``COPIES`` copies (the slope, as
block rows are timed), then fitted as ``fixed_ms + per_kelem_ms * elements / 1000`` by
non-negative least squares: the ``int8_entry`` and ``int8_exit`` of ``device.yaml``, which the
pricing path charges once per int8 region (``pricing.transition_cost``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from autocompress.hardware.lut import EdgeCost
from autocompress.runtime import INPUT_NAME, OPSET, measure_passes

COPIES = 8
MAX_SHAPES = 12  # activation shapes timed, spread over the table's range of sizes


def edge_model(kind: str, shape: tuple[int, ...], copies: int) -> onnx.ModelProto:
    """``copies`` independent QuantizeLinear (``kind`` "entry") or DequantizeLinear ("exit") ops on
    one activation of ``shape``, each with its own scale (nothing a runtime could merge); an exit
    reads an int8 tensor made by one shared QuantizeLinear, which the slope cancels."""
    nodes, inits, outputs = [], [], []
    src = INPUT_NAME
    if kind == "exit":
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "s_in"),
                  numpy_helper.from_array(np.array(0, np.int8), "z_in")]  # fmt: skip
        nodes.append(helper.make_node("QuantizeLinear", [INPUT_NAME, "s_in", "z_in"], ["q_in"], name="q_in"))
        src = "q_in"
    elif kind != "entry":
        raise ValueError(f"kind must be entry or exit; got {kind!r}")
    for c in range(copies):
        inits += [numpy_helper.from_array(np.array(0.05 * (1 + 0.01 * c), np.float32), f"s{c}"),
                  numpy_helper.from_array(np.array(c % 3, np.int8), f"z{c}")]  # fmt: skip
        op = "QuantizeLinear" if kind == "entry" else "DequantizeLinear"
        nodes.append(helper.make_node(op, [src, f"s{c}", f"z{c}"], [f"y{c}"], name=f"n{c}"))
        dtype = TensorProto.INT8 if kind == "entry" else TensorProto.FLOAT
        outputs.append(helper.make_tensor_value_info(f"y{c}", dtype, list(shape)))
    graph = helper.make_graph(nodes, f"{kind}x{copies}", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                              list(shape))], outputs, initializer=inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 9)
    return model


def spread_shapes(shapes: Sequence[tuple[int, int, int]], n: int = MAX_SHAPES) -> list[tuple[int, int, int]]:
    """At most ``n`` distinct (C, H, W) of ``shapes``, evenly spread over their element counts."""
    distinct = sorted(set(shapes), key=lambda s: (s[0] * s[1] * s[2], s))
    if len(distinct) <= n:
        return distinct
    idx = np.unique(np.linspace(0, len(distinct) - 1, n).round().astype(int))
    return [distinct[i] for i in idx]


def fit_edge(elems: Sequence[float], ms: Sequence[float], shapes: int) -> EdgeCost:
    """``fixed_ms + per_kelem_ms * e / 1000`` by non-negative least squares, relative to each time
    (small tensors count as much as large ones)."""
    from scipy.optimize import nnls

    e, t = np.asarray(elems, float), np.maximum(np.asarray(ms, float), 1e-6)
    design = np.stack([np.ones_like(e), e / 1000.0], axis=1) / t[:, None]
    coef, _ = nnls(design, np.ones_like(t))
    return EdgeCost(fixed_ms=round(float(coef[0]), 7), per_kelem_ms=round(float(coef[1]), 8), shapes=shapes)


def measure_edges(
    shapes: Sequence[tuple[int, int, int]], *, threads: int = 1, reps: int = 60, passes: int = 3,
    runtime: str = "onnxruntime", batch: int = 1,
) -> tuple[EdgeCost, EdgeCost, list[dict[str, float]]]:  # fmt: skip
    """Time QuantizeLinear and DequantizeLinear on (up to ``MAX_SHAPES`` of) the activation
    ``shapes`` (C, H, W) and fit both costs.

    Returns:
        (entry cost, exit cost, one record per shape and kind: elements and slope in ms)
    """
    picked = spread_shapes(shapes)
    if not picked:
        raise ValueError("no activation shapes to time")
    with tempfile.TemporaryDirectory() as tmp:
        paths, inputs = [], []
        for kind in ("entry", "exit"):
            for i, (c, h, w) in enumerate(picked):
                shape = (batch, c, h, w)
                for k in (1, COPIES):
                    path = Path(tmp) / f"{kind}{i}x{k}.onnx"
                    onnx.save(edge_model(kind, shape, k), str(path))
                    paths.append(path)
                    inputs.append(shape)
        timings = measure_passes(paths, inputs, passes=passes, group=len(paths), threads=threads, reps=reps,
                                 runtime=runtime)  # fmt: skip
    records: list[dict[str, float]] = []
    fits = {}
    for j, kind in enumerate(("entry", "exit")):
        elems, slopes = [], []
        for i, (c, h, w) in enumerate(picked):
            one, many = timings[2 * (j * len(picked) + i)], timings[2 * (j * len(picked) + i) + 1]
            slope = max(0.0, (many.p10_ms - one.p10_ms) / (COPIES - 1))
            elems.append(float(batch * c * h * w))
            slopes.append(slope)
            records.append({"kind": kind, "elems": elems[-1], "ms": round(slope, 7)})  # type: ignore[dict-item]
        fits[kind] = fit_edge(elems, slopes, len(picked))
    return fits["entry"], fits["exit"], records


def table_shapes(keys: Sequence[object]) -> list[tuple[int, int, int]]:
    """The input activation shapes (C, H, W) of a table's int8 keys (blocks or layers)."""
    return [(k.in_c, k.in_h, k.in_w) for k in keys if getattr(k, "precision", "") == "int8"]  # type: ignore[attr-defined]
