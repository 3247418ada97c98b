"""The one pricing path: a network's latency and energy from a table's rows, for block tables
(``blocks.csv``) and layer tables (``layers.csv``) alike.

A network is a sequence of table entries (a key with its precision). Its latency is

    overhead_ms + transitions + sum(scale[p] x entry)

where each entry is its table row, or, when the table lacks the key, an interpolation (never
zero; one warning per network lists them): the device's roofline when it has one (estimated targets), else a least
squares fit ``a + b * MACs + c * activation elements`` over rows of the key's family (a narrower
family when that has at least 4 rows; with fewer than 3 rows, the nearest row scaled by size),
never under half the family's smallest row. The roofline wins where there is one because the
table's rows were computed from it, so it is exact rather than fitted. ``scale[p]`` is the
table's factor per precision fitted against networks timed end to end (``scale.py``;
``block_scale`` / ``layer_scale`` in ``device.yaml``, 1 where never fitted).

int8 regions (runs of consecutive int8 entries): where the table has fitted QuantizeLinear and
DequantizeLinear costs (``int8_entry`` / ``int8_exit``, measured by ``hardware/qdq.py``), a
region pays the quantize of the activation entering it and the dequantize of the one leaving it
once (``transitions``), and each int8 row is counted without the output dequantize it was timed
with (inside a region the runtime fuses the Q/DQ pair between two int8 entries away). Without
them (older tables, estimated targets) every entry into int8 costs ``transition_ms``, as does
every entry into fp16.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from autocompress.exceptions import TargetError
from autocompress.hardware.lut import DeviceSpec, TableKind

log = logging.getLogger(__name__)

NARROW_MIN_ROWS = 4  # a narrower family is used for interpolation when it has this many rows
CORE_FLOOR = 0.25  # an int8 row less its output dequantize is never priced under this share of the row


class Key(Protocol):
    """What the pricing path needs of a table key (``BlockKey``, ``LayerKey``)."""

    @property
    def precision(self) -> str: ...

    def label(self) -> str: ...

    def family(self) -> tuple[object, ...]:
        """Rows a missing key may be interpolated from."""
        ...

    def narrow(self) -> tuple[object, ...]:
        """A narrower family, preferred when it has enough rows."""
        ...

    def size(self) -> tuple[float, float]:
        """(MACs, activation elements): what interpolation regresses latency on."""
        ...

    def edges(self) -> tuple[float, float]:
        """(input, output) activation elements: what entering and leaving int8 (de)quantizes."""
        ...


K = TypeVar("K", bound=Key)


class Entry(Protocol):
    """A table row as the pricing path reads it."""

    @property
    def key(self) -> Key: ...

    @property
    def latency_ms(self) -> float: ...

    @property
    def energy_mj(self) -> float | None: ...


class Table(Protocol[K]):
    """A block or layer table: rows by key and rows by family."""

    kind: TableKind

    def get(self, key: K) -> Entry | None: ...

    def rows_like(self, key: K) -> list[Entry]:
        """Rows of ``key``'s family (same ``family()``)."""
        ...


@dataclass(frozen=True)
class EntryCost:
    """One entry of a network as priced: its key's label, scaled latency and energy."""

    label: str
    latency_ms: float
    energy_mj: float | None
    interpolated: bool
    fused: bool = False  # run inside the kernel before it (its work priced by the roofline, no launch)


@dataclass(frozen=True)
class Prediction:
    """A network's predicted latency (ms) and energy (mJ, None without a power figure)."""

    latency_ms: float
    energy_mj: float | None
    breakdown: tuple[EntryCost, ...]
    overhead_ms: float
    transitions_ms: float
    source: str = ""  # which table priced it and how its rows were made, e.g. "blocks.csv (measured)"

    @property
    def interpolated(self) -> int:
        return sum(b.interpolated for b in self.breakdown)


def precision_entries(precisions: Sequence[str]) -> int:
    """How often a network enters a reduced precision (int8/fp16): at its input when its first
    entry is reduced, and at every switch into a reduced entry. Each entry quantizes (or
    reformats) one activation; leaving (the dequantize, also at the output) is folded into the
    last reduced entry's own row, which was timed with its dequantize.
    """
    seq = ["fp32", *precisions]
    return sum(b != "fp32" and b != a for a, b in zip(seq, seq[1:]))


def int8_regions(precisions: Sequence[str]) -> list[tuple[int, int]]:
    """(first, last) index of each run of consecutive int8 entries."""
    out: list[tuple[int, int]] = []
    for i, p in enumerate(precisions):
        if p != "int8":
            continue
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def fused_int8(device: DeviceSpec) -> bool:
    """Whether ``device`` prices int8 regions with fitted entry/exit costs (see the module doc)."""
    return device.int8_entry is not None and device.int8_exit is not None


def transition_cost(device: DeviceSpec, keys: Sequence[Key], table: TableKind = "blocks") -> float:
    """What switching precisions costs a network (ms): the fitted entry and exit cost of each int8
    region (with the table kind's ``int8_region_ms``), ``int8_link_ms`` per boundary between two
    int8 entries, ``int8_residual_ms`` per int8 entry with a residual add, plus ``transition_ms`` per entry into any other reduced precision (or into int8
    when no entry/exit cost is fitted)."""
    precisions = [k.precision for k in keys]
    if not fused_int8(device):
        return precision_entries(precisions) * device.transition_ms
    others = precision_entries(["fp32" if p == "int8" else p for p in precisions])
    total = others * device.transition_ms
    assert device.int8_entry is not None and device.int8_exit is not None
    region, link = device.int8_region_ms.get(table, 0.0), device.int8_link_ms.get(table, 0.0)
    residual = device.int8_residual_ms.get(table, 0.0)
    for first, last in int8_regions(precisions):
        total += device.int8_entry.ms(keys[first].edges()[0]) + device.int8_exit.ms(keys[last].edges()[1])
        total += region + link * (last - first) + residual * residuals(keys[first : last + 1])
    return total


def residuals(keys: Sequence[Key]) -> int:
    """How many of ``keys`` add their input to their output (blocks only: a layer table prices the
    add as a layer of its own)."""
    return sum(bool(getattr(k, "residual", lambda: False)()) for k in keys)


def int8_core(device: DeviceSpec, key: Key, row_ms: float) -> float:
    """An int8 row without the output dequantize it was timed with (where the device has a fitted
    exit cost; the row as it is otherwise), never under ``CORE_FLOOR`` of the row."""
    if key.precision != "int8" or not fused_int8(device):
        return row_ms
    assert device.int8_exit is not None
    return max(CORE_FLOOR * row_ms, row_ms - device.int8_exit.ms(key.edges()[1]))


def interpolate(table: Table[K], key: K, estimate: Callable[[K], float] | None = None) -> float | None:
    """Latency of a key missing from ``table``: ``estimate`` (the device's roofline) when given,
    else a fit over rows of its family; None when the family has no row."""
    if estimate is not None:
        return estimate(key)
    family = table.rows_like(key)
    if not family:
        return None
    narrow = [r for r in family if r.key.narrow() == key.narrow()]
    rows = narrow if len(narrow) >= NARROW_MIN_ROWS else family
    lat = np.array([r.latency_ms for r in rows])
    floor = 0.5 * float(lat.min())
    if len(rows) < 3:
        nearest = min(rows, key=lambda r: abs(math.log(_size(r.key) / _size(key))))
        return max(floor, nearest.latency_ms * _size(key) / _size(nearest.key))
    feats = np.array([_features(r.key) for r in rows], dtype=float)
    coef, *_ = np.linalg.lstsq(feats, lat, rcond=None)
    return max(floor, float(np.dot(_features(key), coef)))


def _features(key: Key) -> tuple[float, float, float]:
    macs, elems = key.size()
    return (1.0, float(max(1.0, macs)), float(elems))


def _size(key: Key) -> float:
    """What the nearest row is scaled by: MACs, or activation elements for ops without MACs."""
    macs, elems = key.size()
    return float(max(1.0, macs or elems))


def unpriced(device: DeviceSpec, table: Table[K], keys: Sequence[K],
             estimate: Callable[[K], float] | None = None) -> list[str]:  # fmt: skip
    """Labels of the keys ``table`` cannot price (empty when it can price all of them)."""
    out: list[str] = []
    for key in keys:
        if key.precision not in device.precisions:
            label = f"{key.label()} (the target does not run {key.precision})"
        elif table.get(key) is None and estimate is None and not table.rows_like(key):
            label = key.label()
        else:
            continue
        if label not in out:
            out.append(label)
    return out


def price(device: DeviceSpec, table: Table[K], keys: Sequence[K], *,
          estimate: Callable[[K], float] | None = None, source: str = "",
          fused: Callable[[int, K], float | None] | None = None) -> Prediction:  # fmt: skip
    """Price a network given as its table keys, in order (the one path for blocks and layers).

    Args:
        estimate: the device's roofline for one key (estimated targets), used for missing keys.
        source: how the result is labelled (``Prediction.source``).
        fused: for the entry at an index, its latency when it runs inside the kernel before it
            (the roofline without a launch floor: ``layer_predict.launch_free``), else None.

    Raises:
        TargetError: a precision the device does not run, or a key whose family has no row.
    """
    costs = []
    inside = set()
    for i, key in enumerate(keys):
        prec = key.precision
        if prec not in device.precisions:
            raise TargetError(
                f"target {device.name} does not run {prec} (it runs {', '.join(device.precisions)})"
            )
        scale = device.scale(prec, table.kind)
        in_kernel = fused(i, key) if fused is not None else None
        if in_kernel is not None:  # priced by the roofline: not a row of the table
            inside.add(i)
            power = device.power_w
            costs.append(EntryCost(key.label(), in_kernel * scale, None if power is None else in_kernel * scale * power,
                                   True, fused=True))  # fmt: skip
            continue
        row = table.get(key)
        if row is not None:
            energy = None if row.energy_mj is None else row.energy_mj * scale
            costs.append(EntryCost(key.label(), int8_core(device, key, row.latency_ms) * scale, energy, False))
            continue
        ms = interpolate(table, key, estimate)
        if ms is None:
            raise TargetError(
                f"target {device.name} has no {table.kind} rows like {key.label()} to interpolate from; "
                f"profile them with 'autocompress profile'"
            )
        costs.append(EntryCost(key.label(), int8_core(device, key, ms) * scale, None, True))
    guessed = [c for i, c in enumerate(costs) if c.interpolated and i not in inside]
    if guessed:  # one line per network: a search prices thousands of them
        log.warning("%s: %d %s not in the table, interpolated: %s", device.name, len(guessed), table.kind,
                    "; ".join(f"{c.label} {c.latency_ms:.4f} ms" for c in guessed[:8])
                    + (f"; ... ({len(guessed) - 8} more)" if len(guessed) > 8 else ""))  # fmt: skip
    transitions = transition_cost(device, keys, table.kind)
    fixed = device.overhead_ms + transitions
    latency = fixed + sum(c.latency_ms for c in costs)
    energy_total: float | None
    if costs and all(c.energy_mj is not None for c in costs):
        energy_total = sum(c.energy_mj for c in costs)  # type: ignore[misc]
        if device.power_w is not None:
            energy_total += fixed * device.power_w
    elif device.power_w is not None:
        energy_total = latency * device.power_w  # ms x W = mJ
    else:
        energy_total = None
    return Prediction(latency, energy_total, tuple(costs), device.overhead_ms, transitions, source)
