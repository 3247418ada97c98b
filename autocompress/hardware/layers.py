"""Generic layer tables: the latency of any CNN built from standard layers, not only our MBConv
blocks. ``layers.csv`` sits beside ``blocks.csv`` in a target's folder, one row per layer
configuration at one precision:

    op, in_h, in_w, in_c, out_c, kernel, stride, groups, act, precision, batch,
    latency_ms, latency_std_ms, energy_mj, source

``op`` is ``conv`` (any groups: dense, grouped, depthwise when ``groups == in_c == out_c``),
``linear``, ``maxpool``, ``avgpool``, ``globalpool``, ``add`` (two same-shape tensors),
``mul`` (same shape), ``scale`` (a (C, H, W) tensor times a (C, 1, 1) one: squeeze-excite) or
``act`` (a stand-alone activation). ``act`` is the activation fused into the layer (the only
consumer of its output: ``relu``, ``relu6``, ``clip``, ``sigmoid``, ``hardsigmoid``,
``hardswish``, ``tanh``, ``leakyrelu``) or ``none``.

A network is read from its exported ONNX graph (:func:`extract_layers`): BatchNorm is folded
into the convs by the export, reshapes and flattens are free, anything else is a layer the
tables cannot price (:class:`~autocompress.exceptions.UnpricedLayersError`, with the command
that would profile it). Its latency is the target's ``overhead_ms`` plus the sum of its
layers plus one ``transition_ms`` per entry into a reduced precision, as for blocks.

Measured tables (``autocompress profile --layers``) time each layer alone as 1 copy and 8
copies (the slope, as ``profile.py`` does for blocks); a layer whose exact shape is missing is
interpolated from rows of its family (same op, kernel, stride, depthwise or not, activation,
precision) and counted as interpolated; a family with no row at all is unpriced. Estimated
tables (Jetson, Raspberry Pi) price every layer from the device's calibrated roofline
(``roofline.layer_latency_ms``), labelled ``estimated``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn as nn

from autocompress._io import atomic_write_text
from autocompress.exceptions import BadInputError, TargetError, UnpricedLayersError
from autocompress.hardware.lut import SOURCES, DeviceSpec, csv_records
from autocompress.hardware.predict import BlockCost, Prediction, precision_entries

log = logging.getLogger(__name__)

LAYERS_FILE = "layers.csv"
COLUMNS = (
    "op", "in_h", "in_w", "in_c", "out_c", "kernel", "stride", "groups", "act",
    "precision", "batch", "latency_ms", "latency_std_ms", "energy_mj", "source",
)  # fmt: skip
OPS = ("conv", "linear", "maxpool", "avgpool", "globalpool", "add", "mul", "scale", "act")
ACTS = {"Relu": "relu", "Sigmoid": "sigmoid", "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish",
        "Tanh": "tanh", "LeakyRelu": "leakyrelu", "Clip": "clip"}  # fmt: skip
FREE = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Constant", "Shape", "Gather", "Dropout"}
MIN_LAYER_MS = 0.0005


@dataclass(frozen=True)
class LayerKey:
    """The lookup key of one layer at one precision."""

    op: str
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    kernel: int
    stride: int
    groups: int
    act: str
    precision: str
    batch: int = 1

    @property
    def depthwise(self) -> bool:
        return self.op == "conv" and self.groups > 1 and self.groups == self.in_c == self.out_c

    def family(self) -> tuple[Any, ...]:
        """Rows a missing shape may be interpolated from: everything but the sizes."""
        kind = "dw" if self.depthwise else ("grouped" if self.groups > 1 else "dense")
        return (self.op, self.kernel, self.stride, kind, self.act, self.precision, self.batch)

    @property
    def out_h(self) -> int:
        if self.op in ("linear", "globalpool"):
            return 1
        if self.op in ("conv", "maxpool", "avgpool"):
            return (self.in_h + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1
        return self.in_h

    @property
    def out_w(self) -> int:
        if self.op in ("linear", "globalpool"):
            return 1
        if self.op in ("conv", "maxpool", "avgpool"):
            return (self.in_w + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1
        return self.in_w

    def macs(self) -> int:
        if self.op == "conv":
            return self.out_h * self.out_w * self.out_c * (self.in_c // self.groups) * self.kernel**2
        if self.op == "linear":
            return self.in_c * self.out_c
        if self.op == "globalpool":
            return self.in_h * self.in_w * self.in_c
        return 0

    def elems(self) -> int:
        """Activation elements read and written."""
        n_in = self.in_h * self.in_w * self.in_c * (2 if self.op in ("add", "mul") else 1)
        return n_in + self.out_h * self.out_w * self.out_c

    def label(self) -> str:
        geo = f"{self.in_h}x{self.in_w}x{self.in_c}->{self.out_c}"
        if self.op == "conv":
            g = " dw" if self.depthwise else (f" g{self.groups}" if self.groups > 1 else "")
            geo += f" k{self.kernel} s{self.stride}{g}"
        elif self.op in ("maxpool", "avgpool"):
            geo += f" k{self.kernel} s{self.stride}"
        act = f"+{self.act}" if self.act != "none" and self.op != "act" else (f" {self.act}" if self.op == "act" else "")
        return f"{self.op}{act} {geo} {self.precision}"


@dataclass(frozen=True)
class LayerSpec:
    """A layer of a concrete network: its key (without precision) and the ONNX nodes it covers."""

    key: LayerKey  # precision "fp32" as extracted; priced at the precision of its part
    nodes: tuple[str, ...]

    @property
    def node(self) -> str:
        return self.nodes[0]

    def at(self, precision: str, batch: int = 1) -> LayerKey:
        return replace(self.key, precision=precision, batch=batch)


@dataclass(frozen=True)
class LayerRow:
    key: LayerKey
    latency_ms: float
    latency_std_ms: float
    energy_mj: float | None
    source: str

    def to_csv(self) -> list[Any]:
        k = self.key
        return [k.op, k.in_h, k.in_w, k.in_c, k.out_c, k.kernel, k.stride, k.groups, k.act, k.precision, k.batch,
                f"{self.latency_ms:.6f}", f"{self.latency_std_ms:.6f}",
                "" if self.energy_mj is None else f"{self.energy_mj:.6f}", self.source]  # fmt: skip


@dataclass
class LayerTable:
    rows: dict[LayerKey, LayerRow]
    _families: dict[tuple[Any, ...], list[LayerRow]] = field(default_factory=dict, repr=False)

    def family(self, key: LayerKey) -> list[LayerRow]:
        fam = key.family()
        if fam not in self._families:
            self._families[fam] = [r for k, r in self.rows.items() if k.family() == fam]
        return self._families[fam]


def load_layers(folder: Path, device: DeviceSpec) -> LayerTable:
    """``folder/layers.csv`` (an empty table when the file does not exist).

    Raises:
        TargetError: naming the row and column that broke a rule.
    """
    path = folder / LAYERS_FILE
    if not path.is_file():
        return LayerTable({})
    rows: dict[LayerKey, LayerRow] = {}
    for lineno, f in csv_records(path, COLUMNS):
        try:
            key = LayerKey(f["op"], int(f["in_h"]), int(f["in_w"]), int(f["in_c"]), int(f["out_c"]), int(f["kernel"]),
                           int(f["stride"]), int(f["groups"]), f["act"], f["precision"], int(f["batch"]))  # fmt: skip
            lat, std = float(f["latency_ms"]), float(f["latency_std_ms"])
            energy = float(f["energy_mj"]) if f["energy_mj"] else None
        except ValueError as exc:
            raise TargetError(f"{path}: row {lineno}: {exc}") from None
        if key.op not in OPS:
            raise TargetError(f"{path}: row {lineno}, column op: {key.op!r} is not one of {OPS}")
        if key.precision not in device.precisions:
            raise TargetError(f"{path}: row {lineno}, column precision: {key.precision!r} is not among "
                              f"the device's precisions {device.precisions}")  # fmt: skip
        if f["source"] not in SOURCES:
            raise TargetError(f"{path}: row {lineno}, column source: {f['source']!r} is not one of {SOURCES}")
        if not (math.isfinite(lat) and lat > 0 and min(key.in_h, key.in_w, key.in_c, key.out_c, key.kernel,
                                                        key.stride, key.groups, key.batch) >= 1):  # fmt: skip
            raise TargetError(f"{path}: row {lineno}: sizes must be >= 1 and latency_ms > 0")
        if key in rows:
            raise TargetError(f"{path}: row {lineno} repeats the layer of an earlier row")
        rows[key] = LayerRow(key, lat, std, energy, f["source"])
    return LayerTable(rows)


def save_layers(folder: Path, rows: Iterable[LayerRow]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: (OPS.index(r.key.op), r.key.precision, r.key.act, r.key.kernel,
                                           r.key.stride, r.key.in_h, r.key.in_c, r.key.out_c, r.key.groups)):  # fmt: skip
        writer.writerow(row.to_csv())
    atomic_write_text(folder / LAYERS_FILE, buf.getvalue())


# --------------------------------------------------------------------------- from an ONNX graph


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
                key = LayerKey("conv", h, w, c, int(wdims[0]), k, stride, int(_attr(node, "group", 1)), act, "fp32")
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
                key = LayerKey("maxpool" if op == "MaxPool" else "avgpool", h, w, c, c, k, stride, 1, "none", "fp32")
                nodes = (node.name,)
            elif op == "GlobalAveragePool" or (op == "ReduceMean" and len(shapes.get(node.output[0], [])) in (2, 4)):
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


# --------------------------------------------------------------------------- pricing


def layer_precisions(layers: Sequence[LayerSpec], prefixes: dict[str, str]) -> list[str]:
    """Precision of each layer: that of the longest node-name prefix in ``prefixes`` that its
    first node starts with, else fp32 (parts without weights stay float, as quantization
    excludes them)."""
    out = []
    for layer in layers:
        hits = [p for p in prefixes if layer.node.startswith(p)]
        out.append(prefixes[max(hits, key=len)] if hits else "fp32")
    return out


def roofline_layer(key: LayerKey):  # noqa: ANN201
    """The roofline model's view of a layer (``reference_nets.Layer``)."""
    from autocompress.hardware.reference_nets import Layer, conv_layer, eltwise_layer, linear_layer

    if key.op == "conv":
        return conv_layer(key.in_h, key.in_w, key.in_c, key.out_c, key.kernel, key.stride, groups=key.groups)[0]
    if key.op == "linear":
        return linear_layer(key.in_c, key.out_c)
    if key.op == "globalpool":
        return Layer("pool", key.macs(), 0, key.in_h * key.in_w * key.in_c, key.in_c)
    if key.op in ("maxpool", "avgpool"):
        return Layer("pool", 0, 0, key.in_h * key.in_w * key.in_c, key.out_h * key.out_w * key.out_c)
    n = key.in_h * key.in_w * key.in_c
    return eltwise_layer(2 * n if key.op in ("add", "mul") else n, n)


def _interpolate(table: LayerTable, key: LayerKey) -> float | None:
    rows = table.family(key)
    if not rows:
        return None
    lat = np.array([r.latency_ms for r in rows])
    floor = 0.5 * float(lat.min())

    def size(k: LayerKey) -> float:
        return float(max(1, k.macs() or k.elems()))

    if len(rows) < 3:
        nearest = min(rows, key=lambda r: abs(math.log(size(r.key) / size(key))))
        return max(floor, nearest.latency_ms * size(key) / size(nearest.key))
    feats = np.array([(1.0, r.key.macs(), r.key.elems()) for r in rows], dtype=float)
    coef, *_ = np.linalg.lstsq(feats, lat, rcond=None)
    return max(floor, float(np.dot((1.0, key.macs(), key.elems()), coef)))


def price_layer(device: DeviceSpec, table: LayerTable, key: LayerKey) -> tuple[float | None, float | None, bool]:
    """(latency ms, energy mJ, interpolated) of one layer; latency None when it cannot be priced."""
    row = table.rows.get(key)
    if row is not None:
        return row.latency_ms, row.energy_mj, False
    if device.roofline is not None:
        from autocompress.hardware.roofline import layer_latency_ms

        ms = layer_latency_ms(device.roofline, roofline_layer(key), key.precision)
        return ms, (ms * device.power_w if device.power_w else None), False
    ms = _interpolate(table, key)
    return ms, None, ms is not None


def unpriced(device: DeviceSpec, table: LayerTable, layers: Sequence[LayerSpec],
             precisions: Sequence[str], batch: int = 1) -> list[str]:  # fmt: skip
    """Labels of the layers the table cannot price at the given precisions (empty when all can)."""
    out: list[str] = []
    for layer, prec in zip(layers, precisions, strict=True):
        if prec not in device.precisions:
            out.append(f"{layer.at(prec).label()} (the target does not run {prec})")
            continue
        ms, _, _ = price_layer(device, table, layer.at(prec, batch))
        if ms is None:
            label = layer.at(prec, batch).label()
            if label not in out:
                out.append(label)
    return out


def predict_layers(device: DeviceSpec, table: LayerTable, layers: Sequence[LayerSpec],
                   precisions: Sequence[str], *, batch: int = 1) -> Prediction:  # fmt: skip
    """Latency (ms) and energy (mJ) of a network from its layers: overhead + sum of layers +
    one transition per entry into a reduced precision.

    Raises:
        UnpricedLayersError: a layer whose family has no row (measured tables).
    """
    missing = unpriced(device, table, layers, precisions, batch)
    if missing:
        raise UnpricedLayersError(f"target {device.name} cannot price {len(missing)} layer(s): {'; '.join(missing)}")
    costs = []
    for layer, prec in zip(layers, precisions, strict=True):
        key = layer.at(prec, batch)
        ms, energy, interp = price_layer(device, table, key)
        if interp:
            log.debug("%s: layer %s interpolated (%.4f ms)", device.name, key.label(), ms)
        costs.append(BlockCost(key.label(), float(ms), energy, interp))  # type: ignore[arg-type]
    transitions = precision_entries(list(precisions)) * device.transition_ms
    latency = device.overhead_ms + transitions + sum(c.latency_ms for c in costs)
    if all(c.energy_mj is not None for c in costs) and costs:
        energy_total: float | None = sum(c.energy_mj for c in costs)  # type: ignore[misc]
        if device.power_w is not None:
            energy_total += (device.overhead_ms + transitions) * device.power_w  # type: ignore[operator]
    elif device.power_w is not None:
        energy_total = latency * device.power_w
    else:
        energy_total = None
    return Prediction(latency, energy_total, tuple(costs), device.overhead_ms, transitions)


# --------------------------------------------------------------------------- profiling and estimating


_ACT_MODULES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid,
    "hardswish": nn.Hardswish, "tanh": nn.Tanh, "leakyrelu": nn.LeakyReLU, "none": nn.Identity,
    "clip": lambda: nn.Hardtanh(-1.0, 1.0),
}  # fmt: skip


class _Layer(nn.Module):
    """One layer alone, built so that its export has the node pattern :func:`extract_layers` keys."""

    def __init__(self, key: LayerKey) -> None:
        super().__init__()
        self.key = key
        self.act = _ACT_MODULES[key.act]() if key.op != "act" else nn.Identity()
        if key.op == "conv":
            self.body: nn.Module = nn.Conv2d(key.in_c, key.out_c, key.kernel, key.stride, key.kernel // 2,
                                             groups=key.groups)  # fmt: skip
        elif key.op == "linear":
            self.body = nn.Linear(key.in_c, key.out_c)
        elif key.op == "maxpool":
            self.body = nn.MaxPool2d(key.kernel, key.stride, key.kernel // 2)
        elif key.op == "avgpool":
            self.body = nn.AvgPool2d(key.kernel, key.stride, key.kernel // 2)
        elif key.op == "globalpool":
            self.body = nn.AdaptiveAvgPool2d(1)
        elif key.op == "act":
            self.body = _ACT_MODULES[key.act]()
        elif key.op in ("add", "mul", "scale"):
            self.body = nn.Identity()
            self.scale = nn.Parameter(torch.rand(1, key.in_c, 1, 1) + 0.5)
        else:
            raise BadInputError(f"cannot profile layer op {key.op!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op = self.key.op
        if op == "linear":
            return self.act(self.body(torch.flatten(x, 1)))
        if op == "add":
            return self.act(x + x)  # Add(x, x): two same-shape operands, as a residual add reads
        if op == "mul":
            return x * x
        if op == "scale":
            return x * self.scale
        return self.act(self.body(x))


def layer_onnx(key: LayerKey, workdir: Path, tag: str) -> Path:
    """The layer alone, exported and, for int8, quantized: ``workdir/tag.<precision>.onnx``."""
    from autocompress.compress.quantize import quantize_int8
    from autocompress.runtime import export_onnx

    fp32 = workdir / f"{tag}.fp32.onnx"
    if not fp32.exists():
        module = _Layer(replace(key, precision="fp32")).eval()
        export_onnx(module, fp32, channels=key.in_c, resolution=key.in_h)
    if key.precision == "fp32":
        return fp32
    if key.precision == "int8":
        calib = np.abs(np.random.default_rng(0).standard_normal((16, key.in_c, key.in_h, key.in_w), dtype=np.float32))
        return _name_nodes(quantize_int8(fp32, workdir / f"{tag}.int8.onnx", calib))
    raise BadInputError(f"cannot profile precision {key.precision!r} on this machine")


def _name_nodes(path: Path) -> Path:
    """Give unnamed nodes (the quantizer leaves some) unique names, so copies can be told apart."""
    model = onnx.load(str(path))
    if all(n.name for n in model.graph.node):
        return path
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"node_{i}"
    onnx.save(model, str(path))
    return path


def profile_layer_keys(
    keys: Sequence[LayerKey], *, threads: int = 1, reps: int = 60, passes: int = 3, copies: int = 8,
    runtime: str = "onnxruntime", on_progress: Callable[[int, int], None] | None = None,
) -> list[LayerRow]:  # fmt: skip
    """Time each layer as a graph of 1 copy and of ``copies`` copies (10th percentiles, fastest of
    ``passes`` passes); the row is the slope ``(T_k - T_1) / (k - 1)``, as for blocks."""
    from autocompress.hardware.profile import GROUP, copies_onnx
    from autocompress.runtime import measure_passes

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths, shapes = [], []
        for i, key in enumerate(keys):
            one = layer_onnx(key, work, f"l{i}")
            paths += [one, copies_onnx(one, copies)]
            shapes += [(1, key.in_c, key.in_h, key.in_w)] * 2
            if on_progress:
                on_progress(i + 1, len(keys) * (1 + passes))
        timings = measure_passes(
            paths, shapes, passes=passes, group=GROUP, threads=threads, reps=reps, runtime=runtime,
            on_progress=(lambda d, t: on_progress(len(keys) + d // 2, len(keys) * (1 + passes))) if on_progress else None,
        )  # fmt: skip
    rows = []
    for j, key in enumerate(keys):
        one, many = timings[2 * j], timings[2 * j + 1]
        slope = (many.p10_ms - one.p10_ms) / (copies - 1)
        rows.append(LayerRow(key, max(MIN_LAYER_MS, slope), float(np.hypot(many.std_ms, one.std_ms) / (copies - 1)),
                             None, "measured"))  # fmt: skip
    return rows


def estimate_layer_rows(device: DeviceSpec, keys: Iterable[LayerKey]) -> list[LayerRow]:
    """``estimated`` rows from the device's roofline (energy = latency x typical power)."""
    from autocompress.hardware.roofline import layer_latency_ms

    if device.roofline is None:
        raise TargetError(f"target {device.name} has no roofline to estimate layers from")
    rows = []
    for key in keys:
        ms = layer_latency_ms(device.roofline, roofline_layer(key), key.precision)
        rows.append(LayerRow(key, ms, 0.0, ms * device.power_w if device.power_w else None, "estimated"))
    return rows


def merge_rows(folder: Path, device: DeviceSpec, rows: Iterable[LayerRow]) -> LayerTable:
    """Add ``rows`` to ``folder/layers.csv`` (replacing rows of the same key) and write it."""
    table = load_layers(folder, device)
    merged = dict(table.rows)
    merged.update({r.key: r for r in rows})
    save_layers(folder, merged.values())
    return LayerTable(merged)
