"""Estimate layer-table rows from a device's calibrated roofline (targets this machine cannot
measure: Jetson, Raspberry Pi), labelled ``estimated``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from autocompress.exceptions import TargetError
from autocompress.hardware.layer_table import LayerKey, LayerRow
from autocompress.hardware.lut import DeviceSpec
from autocompress.hardware.reference_nets import Layer, conv_layer, eltwise_layer, linear_layer, matmul_layer
from autocompress.hardware.roofline import layer_latency_ms


def roofline_layer(key: LayerKey) -> Layer:
    """The roofline model's view of a layer: convs, linears and matmuls by their MACs, every
    other op memory-bound (its activation bytes over the bandwidth, with the per-kernel floor)."""
    if key.op == "conv":
        return conv_layer(key.in_h, key.in_w, key.in_c, key.out_c, key.kernel, key.stride, groups=key.groups)[
            0
        ]
    if key.op == "linear":
        if key.in_h * key.in_w == 1:
            return linear_layer(key.in_c, key.out_c)
        rows = key.in_h * key.in_w
        return Layer(
            "linear", key.macs(), key.in_c * key.out_c + key.out_c, rows * key.in_c, rows * key.out_c
        )
    if key.op == "matmul":
        return matmul_layer(key.in_w, key.in_h, key.out_c, key.in_c)
    if key.op == "globalpool":
        return Layer("pool", key.macs(), 0, key.in_h * key.in_w * key.in_c, key.in_c)
    if key.op in ("maxpool", "avgpool"):
        return Layer("pool", 0, 0, key.in_h * key.in_w * key.in_c, key.out_h * key.out_w * key.out_c)
    out = key.out_h * key.out_w * key.out_c
    return eltwise_layer(key.elems() - out, out)


def layer_roofline_ms(device: DeviceSpec, key: LayerKey) -> float:
    """Roofline latency of one layer at its precision on ``device``."""
    if device.roofline is None:
        raise TargetError(f"target {device.name} has no roofline to estimate layers from")
    return layer_latency_ms(device.roofline, roofline_layer(key), key.precision)


def fused_ms(device: DeviceSpec, key: LayerKey) -> float:
    """Roofline latency of a layer run inside the kernel before it: its work, no launch floor."""
    if device.roofline is None:
        raise TargetError(f"target {device.name} has no roofline to estimate layers from")
    return layer_latency_ms(device.roofline, replace(roofline_layer(key), launches=0), key.precision)


def estimate_layer_rows(device: DeviceSpec, keys: Iterable[LayerKey]) -> list[LayerRow]:
    """``estimated`` rows from the device's roofline (energy = latency x typical power)."""
    rows = []
    for key in keys:
        ms = layer_roofline_ms(device, key)
        rows.append(LayerRow(key, ms, 0.0, ms * device.power_w if device.power_w else None, "estimated"))
    return rows
