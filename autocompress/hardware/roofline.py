"""Estimated tables for devices this machine cannot measure: a roofline per fused block
(compute at a fraction of the precision's peak vs memory traffic at a fraction of bandwidth)
plus a per-kernel launch floor. Everything it produces is labelled ``estimated``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from autocompress.arch import BlockSpec
from autocompress.exceptions import TargetError
from autocompress.hardware.lut import BlockKey, DeviceSpec, LatencyTable, Row, load_device

BYTES_PER_ELEM = {"fp32": 4, "fp16": 2, "int8": 1}


def block_latency_ms(device: DeviceSpec, spec: BlockSpec, precision: str) -> float:
    """Roofline latency of one fused block at ``precision`` on ``device``."""
    roof = device.roofline
    if roof is None:
        raise TargetError(f"target {device.name} has no roofline section to estimate from")
    if precision not in roof.peak_gops:
        raise TargetError(f"target {device.name}: roofline has no peak for {precision}")
    eff = roof.efficiency.get(spec.op, roof.efficiency.get("default", 0.1))
    compute_s = 2.0 * spec.macs() / (roof.peak_gops[precision] * 1e9 * eff)
    traffic = (spec.activation_elems() + spec.params()) * BYTES_PER_ELEM[precision]
    memory_s = traffic / (roof.memory_bandwidth_gbs * 1e9 * roof.memory_efficiency)
    return max(compute_s, memory_s) * 1e3 + spec.kernels() * roof.kernel_overhead_ms


def estimate_rows(device: DeviceSpec, blocks: Iterable[BlockSpec]) -> list[Row]:
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
