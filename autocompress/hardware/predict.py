"""Latency and energy of a network on a target: the sum of its fused blocks from the table,
plus precision-change costs, plus a per-inference overhead. Separate from the search.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from autocompress.arch import BlockSpec
from autocompress.exceptions import TargetError
from autocompress.hardware.lut import BlockKey, LatencyTable, Row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockCost:
    label: str
    latency_ms: float
    energy_mj: float | None
    interpolated: bool


@dataclass(frozen=True)
class Prediction:
    latency_ms: float
    energy_mj: float | None
    breakdown: tuple[BlockCost, ...]
    overhead_ms: float
    transitions_ms: float

    @property
    def interpolated(self) -> int:
        return sum(b.interpolated for b in self.breakdown)


def predict(
    table: LatencyTable, blocks: list[BlockSpec], precisions: list[str], *, batch: int = 1
) -> Prediction:
    """Predict a network's latency (ms) and energy (mJ) on ``table``'s device.

    Blocks missing from the table are interpolated from measured neighbours (never zero) and
    logged as a warning.
    """
    dev = table.device
    costs = []
    for block, prec in zip(blocks, precisions, strict=True):
        if prec not in dev.precisions:
            raise TargetError(f"target {dev.name} does not run {prec} (it runs {', '.join(dev.precisions)})")
        key = BlockKey.of(block, prec, batch)
        row = table.get(key)
        if row is not None:
            energy_mj = None if row.energy_mj is None else row.energy_mj * dev.scale(prec)
            costs.append(BlockCost(key.label(), row.latency_ms * dev.scale(prec), energy_mj, False))
        else:
            ms = interpolate(table, key)
            log.warning("%s: block %s is not in the table; interpolated %.4f ms", dev.name, key.label(), ms)
            costs.append(BlockCost(key.label(), ms * dev.scale(prec), None, True))
    transitions = precision_entries(precisions) * dev.transition_ms
    latency = dev.overhead_ms + transitions + sum(c.latency_ms for c in costs)
    if all(c.energy_mj is not None for c in costs):
        energy: float | None = sum(c.energy_mj for c in costs)  # type: ignore[misc]
        if dev.power_w is not None:
            energy += (dev.overhead_ms + transitions) * dev.power_w
    elif dev.power_w is not None:
        energy = latency * dev.power_w  # ms x W = mJ
    else:
        energy = None
    return Prediction(latency, energy, tuple(costs), dev.overhead_ms, transitions)


def precision_entries(precisions: list[str]) -> int:
    """How often a network enters a reduced precision (int8/fp16): at its input when its first
    block is reduced, and at every switch into a reduced block. Each entry quantizes (or
    reformats) one activation; leaving is folded into the last reduced block's own row.
    """
    seq = ["fp32", *precisions]
    return sum(b != "fp32" and b != a for a, b in zip(seq, seq[1:]))


def interpolate(table: LatencyTable, key: BlockKey) -> float:
    """Estimate a missing block: from the device's roofline when it has one, else from rows of
    the same op and precision.

    Fits latency ~ a + b * MACs + c * activation elements over rows with the same op,
    precision, batch (and kernel and stride when there are enough of those), by least squares,
    and never returns less than half the smallest such row.
    """
    if table.device.roofline is not None:
        from autocompress.hardware.roofline import block_latency_ms

        return block_latency_ms(table.device, key.spec(), key.precision)
    family = table.family(key.op, key.precision, key.batch)
    if not family:
        raise TargetError(
            f"target {table.device.name} has no {key.op} rows at {key.precision}, batch {key.batch}; "
            f"profile them with 'autocompress profile'"
        )
    close = [r for r in family if r.key.kernel == key.kernel and r.key.stride == key.stride]
    rows: list[Row] = close if len(close) >= 4 else family
    feats = np.array([_features(r.key) for r in rows], dtype=float)
    lat = np.array([r.latency_ms for r in rows])
    floor = 0.5 * float(lat.min())
    if len(rows) < 3:
        nearest = min(rows, key=lambda r: abs(np.log(_features(r.key)[1] / _features(key)[1])))
        scale = _features(key)[1] / _features(nearest.key)[1]
        return max(floor, nearest.latency_ms * scale)
    coef, *_ = np.linalg.lstsq(feats, lat, rcond=None)
    return max(floor, float(np.dot(_features(key), coef)))


def _features(key: BlockKey) -> tuple[float, float, float]:
    spec = key.spec()
    return (1.0, float(max(1, spec.macs())), float(spec.activation_elems()))
