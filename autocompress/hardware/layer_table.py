"""Layer tables: the schema of ``layers.csv`` (one row per layer configuration at one precision,
for any CNN built from standard layers) and reading, writing and merging it.

``layers.csv`` sits beside ``blocks.csv`` in a target's folder (schema 2; a schema-1 file, the
first 15 columns only, still loads with the defaults of the last three):

    op, in_h, in_w, in_c, out_c, kernel, stride, groups, act, precision, batch,
    latency_ms, latency_std_ms, energy_mj, source, inputs, pad, mode

``op`` is one of :data:`OPS`; ``act`` the activation fused into the layer (the only consumer of
its output; one of :data:`ACTS`) or ``none``; sizes are of the input, ``(C, H, W)`` (a tensor
of another rank is read as ``C = dims[1]``, ``W = dims[-1]``, ``H`` the rest). Per op:

- ``conv`` (any ``groups``: depthwise when ``groups == in_c == out_c``); ``linear``
  (``in_h x in_w`` rows of ``in_c`` features, 1 x 1 for a vector); ``matmul`` (two activations:
  ``in_w`` products of ``[in_h, in_c] @ [in_c, out_c]``).
- ``maxpool``/``avgpool`` (``pad``: -1 = ``kernel // 2``; ``mode`` ``ceil`` for ceil mode);
  ``globalpool`` (``mode`` ``max`` for global max pooling, else average / ReduceMean over H, W).
- Memory-bound ops (no MACs): ``add`` (two same-shape tensors, also Sub/Div), ``mul`` (same
  shape), ``scale`` (a tensor with a broadcast one or a constant: squeeze-excite), ``act`` (a
  stand-alone activation), ``bn`` (stand-alone BatchNormalization: pre-activation),
  ``concat`` (``inputs`` tensors into ``in_c`` = output channels), ``split`` (into ``inputs``
  tensors), ``slice`` (``out_c`` channels' worth of ``in_c``), ``resize`` (``stride`` the
  upsampling factor, ``kernel`` the downsampling one; ``mode`` ``nearest``/``bilinear``/
  ``bicubic``), ``transpose``, ``softmax`` (over the last axis; ``mode`` ``log``).

Measured tables are written by ``layer_profile``, estimated ones by ``layer_estimate``; a
network is read from ONNX by ``onnx_layers`` and priced by ``layer_predict``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autocompress._io import atomic_write_text, path_kind
from autocompress.exceptions import TargetError
from autocompress.hardware.lut import SOURCES, DeviceSpec, FamilyLookup, TableKind, csv_records

LAYERS_FILE = "layers.csv"
COLUMNS_V1 = (
    "op", "in_h", "in_w", "in_c", "out_c", "kernel", "stride", "groups", "act",
    "precision", "batch", "latency_ms", "latency_std_ms", "energy_mj", "source",
)  # fmt: skip
COLUMNS = (*COLUMNS_V1, "inputs", "pad", "mode")
OPS = ("conv", "linear", "matmul", "maxpool", "avgpool", "globalpool", "add", "mul", "scale", "act", "bn",
       "concat", "split", "slice", "resize", "transpose", "softmax")  # fmt: skip
ACTS = (
    "none",
    "relu",
    "relu6",
    "clip",
    "sigmoid",
    "hardsigmoid",
    "hardswish",
    "tanh",
    "leakyrelu",
    "silu",
    "gelu",
)
MODES = {"maxpool": ("", "ceil"), "avgpool": ("", "ceil"), "globalpool": ("", "max"),
         "resize": ("nearest", "bilinear", "bicubic"), "softmax": ("", "log")}  # fmt: skip
WINDOWED = ("conv", "maxpool", "avgpool")  # ops whose family fixes kernel, stride and padding
MEMORY_OPS = (
    "add",
    "mul",
    "scale",
    "act",
    "bn",
    "concat",
    "split",
    "slice",
    "resize",
    "transpose",
    "softmax",
)


@dataclass(frozen=True)
class LayerKey:
    """The lookup key of one layer at one precision (see the module docstring per op)."""

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
    inputs: int = 1  # concat: tensors joined; split: tensors made
    pad: int = -1  # pools: padding per side; -1 = kernel // 2
    mode: str = ""  # see MODES

    @property
    def depthwise(self) -> bool:
        return self.op == "conv" and self.groups > 1 and self.groups == self.in_c == self.out_c

    def family(self) -> tuple[Any, ...]:
        """Rows a missing shape may be interpolated from: everything but the sizes (memory-bound
        ops: everything but sizes, factors and input counts, which :meth:`narrow` prefers)."""
        if self.op in WINDOWED:
            kind = "dw" if self.depthwise else ("grouped" if self.groups > 1 else "dense")
            return (self.op, self.kernel, self.stride, kind, self.act, self.precision, self.batch, self.pad,
                    self.mode)  # fmt: skip
        return (self.op, self.act, self.mode, self.precision, self.batch)

    def narrow(self) -> tuple[Any, ...]:
        """Windowed ops: nothing narrower than the family; others: same factor and inputs."""
        return () if self.op in WINDOWED else (self.kernel, self.stride, self.inputs)

    def size(self) -> tuple[float, float]:
        return float(self.macs()), float(self.elems())

    def edges(self) -> tuple[float, float]:
        """(input, output) activation elements: what entering int8 quantizes and leaving it dequantizes."""
        return float(self.in_h * self.in_w * self.in_c), float(self.out_h * self.out_w * self.out_c)

    @property
    def padding(self) -> int:
        return self.kernel // 2 if self.pad < 0 else self.pad

    def _out(self, n: int) -> int:
        if self.op in WINDOWED:
            span = n + 2 * self.padding - self.kernel
            return max(1, (-(-span // self.stride) if self.mode == "ceil" else span // self.stride) + 1)
        if self.op == "resize":
            return max(1, n * self.stride // self.kernel)
        return n

    @property
    def out_h(self) -> int:
        return 1 if self.op == "globalpool" else self._out(self.in_h)

    @property
    def out_w(self) -> int:
        return 1 if self.op == "globalpool" else self._out(self.in_w)

    def macs(self) -> int:
        if self.op == "conv":
            return self.out_h * self.out_w * self.out_c * (self.in_c // self.groups) * self.kernel**2
        if self.op in ("linear", "matmul"):
            return self.in_h * self.in_w * self.in_c * self.out_c
        if self.op == "globalpool":
            return self.in_h * self.in_w * self.in_c
        return 0

    def elems(self) -> int:
        """Activation elements read and written."""
        n_in = self.in_h * self.in_w * self.in_c
        if self.op == "matmul":
            return self.in_w * (self.in_h * self.in_c + self.in_c * self.out_c + self.in_h * self.out_c)
        if self.op == "slice":
            return 2 * self.in_h * self.in_w * self.out_c
        if self.op in ("add", "mul"):
            n_in *= 2
        return n_in + self.out_h * self.out_w * self.out_c

    def label(self) -> str:
        geo = f"{self.in_h}x{self.in_w}x{self.in_c}->{self.out_c}"
        if self.op == "conv":
            g = " dw" if self.depthwise else (f" g{self.groups}" if self.groups > 1 else "")
            geo += f" k{self.kernel} s{self.stride}{g}"
        elif self.op in ("maxpool", "avgpool"):
            geo += f" k{self.kernel} s{self.stride}" + (f" p{self.pad}" if self.pad >= 0 else "")
        elif self.op == "resize":
            geo += f" x{self.stride}" + (f"/{self.kernel}" if self.kernel > 1 else "")
        elif self.op in ("concat", "split"):
            geo += f" n{self.inputs}"
        if self.mode:
            geo += f" {self.mode}"
        act = (
            f"+{self.act}"
            if self.act != "none" and self.op != "act"
            else (f" {self.act}" if self.op == "act" else "")
        )
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
                "" if self.energy_mj is None else f"{self.energy_mj:.6f}", self.source, k.inputs, k.pad, k.mode]  # fmt: skip


@dataclass
class LayerTable(FamilyLookup):
    rows: dict[LayerKey, LayerRow]
    _families: dict[tuple[Any, ...], list[LayerRow]] = field(default_factory=dict, repr=False)
    kind: TableKind = field(default="layers", init=False)


def load_layers(folder: Path, device: DeviceSpec) -> LayerTable:
    """``folder/layers.csv`` (an empty table when the file does not exist).

    Raises:
        TargetError: naming the row and column that broke a rule.
    """
    path = folder / LAYERS_FILE
    if not path.is_file():
        return LayerTable({})
    rows: dict[LayerKey, LayerRow] = {}
    for lineno, f in csv_records(path, _columns(path)):
        try:
            key = LayerKey(f["op"], int(f["in_h"]), int(f["in_w"]), int(f["in_c"]), int(f["out_c"]), int(f["kernel"]),
                           int(f["stride"]), int(f["groups"]), f["act"], f["precision"], int(f["batch"]),
                           int(f.get("inputs") or 1), int(f.get("pad") or -1), f.get("mode", ""))  # fmt: skip
            lat, std = float(f["latency_ms"]), float(f["latency_std_ms"])
            energy = float(f["energy_mj"]) if f["energy_mj"] else None
        except ValueError as exc:
            raise TargetError(f"{path}: row {lineno}: {exc}") from None
        if key.op not in OPS:
            raise TargetError(f"{path}: row {lineno}, column op: {key.op!r} is not one of {OPS}")
        if key.act not in ACTS:
            raise TargetError(f"{path}: row {lineno}, column act: {key.act!r} is not one of {ACTS}")
        if key.mode not in MODES.get(key.op, ("",)):
            raise TargetError(f"{path}: row {lineno}, column mode: {key.mode!r} is not one of "
                              f"{MODES.get(key.op, ('',))} for op {key.op}")  # fmt: skip
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


def _columns(path: Path) -> tuple[str, ...]:
    """The header the file was written with: schema 2, or schema 1 (no inputs, pad, mode)."""
    if path_kind(path) != "a file":
        return COLUMNS  # csv_records names the problem (and never opens a FIFO)
    try:
        with path.open() as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError):
        return COLUMNS  # csv_records names the problem
    return COLUMNS_V1 if tuple(h.strip() for h in first.split(",")) == COLUMNS_V1 else COLUMNS


def save_layers(folder: Path, rows: Iterable[LayerRow]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: (OPS.index(r.key.op), r.key.precision, r.key.act, r.key.mode, r.key.kernel, r.key.stride,
                                           r.key.pad, r.key.inputs, r.key.in_h, r.key.in_w, r.key.in_c, r.key.out_c,
                                           r.key.groups)):  # fmt: skip
        writer.writerow(row.to_csv())
    atomic_write_text(folder / LAYERS_FILE, buf.getvalue())


def merge_rows(folder: Path, device: DeviceSpec, rows: Iterable[LayerRow]) -> LayerTable:
    """Add ``rows`` to ``folder/layers.csv`` (replacing rows of the same key) and write it."""
    table = load_layers(folder, device)
    merged = dict(table.rows)
    merged.update({r.key: r for r in rows})
    save_layers(folder, merged.values())
    return LayerTable(merged)
