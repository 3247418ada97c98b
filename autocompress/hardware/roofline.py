"""Estimated tables for devices this machine cannot measure: a roofline model per *layer*
(kernel), shared by our fused blocks (decomposed into their layers) and by the reference
networks a device is calibrated on (``reference_nets``, ``calibrate``).

A layer costs ``max(compute, memory) + launches x kernel_overhead_ms``, where compute is its
multiply-adds at a fraction of the precision's datasheet peak and memory its activation and
weight bytes at a fraction of the memory bandwidth. On a GPU with tensor cores
(``roofline.gemm_tile``), a convolution runs as an implicit GEMM in whole tiles: its compute
time is divided by the filled share of those tiles (:func:`tile_fill`). Layers are fused as
TensorRT builds them (conv + batch-norm + activation + residual add is one kernel; a
squeeze-excite, a classifier head are one kernel each): a layer fused into the kernel before
it has ``launches=0`` and pays its roofline time but no launch floor. Everything it produces
is labelled ``estimated``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from autocompress.arch import ACT_MAC_EQUIV, BlockSpec
from autocompress.exceptions import TargetError
from autocompress.hardware.lut import BlockKey, DeviceSpec, LatencyTable, Roofline, Row, load_device
from autocompress.hardware.reference_nets import (
    Layer,
    conv_layer,
    eltwise_layer,
    global_pool_layer,
    linear_layer,
    se_layers,
)

BYTES_PER_ELEM = {"fp32": 4, "fp16": 2, "int8": 1}
DEFAULT_EFFICIENCY = 0.1


def block_layers(spec: BlockSpec) -> list[Layer]:
    """The kernels a runtime runs for one fused block (their MACs add up to ``spec.macs()``,
    plus what a hard-swish costs).

    ``stem``: the input's normalisation (the exported network's ``(x - mean) / std``: one
    pointwise kernel; a fusing runtime cannot fold it into a zero-padded conv), then one conv
    (+bn+act); ``mbconv``: 1x1 expand, kxk depthwise, 1x1 project with the
    residual add fused into it; ``mbconv_se``: the same with squeeze-excite after the depthwise
    conv (global pool, 1x1 reduce, 1x1 expand, scale: one kernel, ``reference_nets.se_layers``,
    as EfficientNet's is built); ``head``: global average pool with the linear layer fused into
    its kernel (one launch). A conv followed by ``hswish`` is charged ``ACT_MAC_EQUIV["hswish"]``
    multiply-add equivalents per output element on top of its MACs (relu is a free clamp in the
    conv's epilogue).
    """
    if spec.op == "stem":
        stem, _, _ = conv_layer(spec.in_h, spec.in_w, spec.in_c, spec.out_c, spec.kernel, spec.stride, name="stem")
        pixels = spec.in_h * spec.in_w * spec.in_c
        return [eltwise_layer(pixels, pixels, "normalize"), _with_act(stem, spec.act)]
    if spec.op == "head":
        return [
            global_pool_layer(spec.in_h, spec.in_w, spec.in_c, "pool"),
            linear_layer(spec.in_c, spec.out_c, "fc", launches=0),
        ]
    if not spec.is_mbconv:
        raise TargetError(f"no roofline decomposition for block op {spec.op!r}")
    hid = spec.hidden
    expand, h, w = conv_layer(spec.in_h, spec.in_w, spec.in_c, hid, 1, name="expand")
    dw, oh, ow = conv_layer(h, w, hid, hid, spec.kernel, spec.stride, groups=hid, name="depthwise")
    project, _, _ = conv_layer(oh, ow, hid, spec.out_c, 1, residual=spec.residual, name="project")
    layers = [_with_act(expand, spec.act), _with_act(dw, spec.act)]
    if spec.se:
        layers += se_layers(oh, ow, hid, spec.se_c)
    return layers + [project]


def _with_act(layer: Layer, act: str) -> Layer:
    extra = ACT_MAC_EQUIV.get(act, 0) * layer.out_elems
    return replace(layer, macs=layer.macs + extra) if extra else layer


def _check(device: DeviceSpec, precision: str) -> Roofline:
    roof = device.roofline
    if roof is None:
        raise TargetError(f"target {device.name} has no roofline section to estimate from")
    if precision not in roof.peak_gops:
        raise TargetError(f"target {device.name}: roofline has no peak for {precision}")
    return roof


def layer_efficiency(roof: Roofline, kind: str, precision: str, op: str = "") -> float:
    """Fraction of ``precision``'s peak a layer of ``kind`` (inside a block ``op``) reaches."""
    if roof.precision_efficiency:
        prec = roof.precision_efficiency.get(precision)
        if prec is None:
            raise TargetError(f"roofline has no precision_efficiency for {precision}")
        return prec * roof.layer_efficiency.get(kind, 1.0)
    eff = roof.efficiency
    return eff.get(kind, eff.get(op, eff.get("default", DEFAULT_EFFICIENCY)))


def tile_fill(tile: tuple[int, int] | None, rows: float, cols: float) -> float:
    """The share of its GEMM tiles a convolution fills: ``rows`` output pixels by ``cols``
    output channels (per group), computed in whole ``tile[0] x tile[1]`` tiles (1 without a tile
    or for a layer that is not a GEMM). A ResNet's 7 x 7 stage fills 49 of a 128-row tile: it
    reaches 38% of the throughput a 640-pixel detector's layers do at the same efficiency."""
    if tile is None or rows <= 0 or cols <= 0:
        return 1.0
    tm, tn = tile
    return rows / (math.ceil(rows / tm) * tm) * cols / (math.ceil(cols / tn) * tn)


def layer_latency_ms(roof: Roofline, layer: Layer, precision: str, op: str = "") -> float:
    """Roofline latency of one layer: the slower of compute and memory, plus the launch floor
    when it starts a kernel (``layer.launches``)."""
    compute_s = 0.0
    if layer.macs:
        fill = tile_fill(roof.gemm_tile, layer.gemm_m, layer.gemm_n)
        gops = roof.peak_gops[precision] * layer_efficiency(roof, layer.kind, precision, op) * fill
        compute_s = 2.0 * layer.macs / (gops * 1e9)
    traffic = (layer.in_elems + layer.out_elems + layer.weights) * BYTES_PER_ELEM[precision]
    memory_s = traffic / (roof.memory_bandwidth_gbs * 1e9 * roof.memory_efficiency)
    floor = roof.kernel_overhead_ms * layer.launches
    if roof.floor_mode == "max":
        return max(compute_s * 1e3, memory_s * 1e3, floor)
    return max(compute_s, memory_s) * 1e3 + floor


def layers_latency_ms(device: DeviceSpec, layers: Sequence[Layer], precision: str, *, op: str = "",
                      include_overhead: bool = False) -> float:  # fmt: skip
    """Sum of the kernels' roofline latencies (plus the per-inference overhead if asked)."""
    roof = _check(device, precision)
    total = sum(layer_latency_ms(roof, layer, precision, op) for layer in layers)
    return total + (device.overhead_ms if include_overhead else 0.0)


def block_latency_ms(device: DeviceSpec, spec: BlockSpec, precision: str) -> float:
    """Roofline latency of one fused block at ``precision`` on ``device``."""
    return layers_latency_ms(device, block_layers(spec), precision, op=spec.op)


def estimate_rows(device: DeviceSpec, blocks: Iterable[BlockSpec]) -> list[Row]:
    """One ``estimated`` row per block and device precision (energy = latency x power)."""
    rows = []
    for spec in blocks:
        for prec in device.precisions:
            ms = block_latency_ms(device, spec, prec)
            energy = ms * device.power_w if device.power_w is not None else None
            rows.append(Row(BlockKey.of(spec, prec, device.batch), ms, 0.0, energy, "estimated"))
    return rows


def write_estimated_table(folder: Path, blocks: Iterable[BlockSpec]) -> LatencyTable:
    """(Re)write ``folder/blocks.csv`` from ``folder/device.yaml``'s roofline for ``blocks``."""
    device = load_device(folder / "device.yaml")
    if device.source != "estimated":
        raise TargetError(f"{folder} is a {device.source} table; only estimated tables are generated")
    table = LatencyTable(device=device, rows={r.key: r for r in estimate_rows(device, blocks)}, folder=folder)
    table.save(folder, write_device=False)
    return table
