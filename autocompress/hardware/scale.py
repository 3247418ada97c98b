"""Fit a table's scale (``block_scale`` or ``layer_scale`` in ``device.yaml``) per precision from
networks timed end to end, and store it.

Rows timed alone run a little slower than inside a network (a network's activations stay in
cache from one entry to the next), by a different amount in int8 (runtimes fuse QDQ edges with
their neighbours'); the factor absorbs that. The fit is the same for block and layer tables: it
only reads predictions made by :func:`autocompress.hardware.pricing.price` at scale 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from autocompress.hardware.lut import SCALE_FIELDS, DeviceSpec, TableKind, load_device, save_device
from autocompress.hardware.pricing import Prediction

SCALE_BOUNDS = (0.5, 2.0)  # a factor outside these says the table or the timing is wrong, not the cache


@dataclass(frozen=True)
class Timed:
    """One network timed end to end, and its prediction with the table's scale at 1."""

    prediction: Prediction
    precisions: Sequence[str]  # of each entry of ``prediction.breakdown``
    measured_ms: float
    keys: Sequence[Any] | None = None  # the table keys priced (for the int8 fit's residual count)


def unit_scale(device: DeviceSpec, table: TableKind) -> DeviceSpec:
    """``device`` with the ``table``'s scale at 1 and no int8 link/residual/region terms for it
    (what the fit's predictions are made with)."""
    return device.model_copy(update={
        SCALE_FIELDS[table]: 1.0,
        "int8_link_ms": {k: v for k, v in device.int8_link_ms.items() if k != table},
        "int8_region_ms": {k: v for k, v in device.int8_region_ms.items() if k != table},
        "int8_residual_ms": {k: v for k, v in device.int8_residual_ms.items() if k != table},
    })  # fmt: skip


@dataclass(frozen=True)
class Int8Fit:
    """int8 priced from networks timed end to end: the factor on int8 rows (less their output
    dequantize), and what each boundary between two int8 entries and each int8 region cost
    beyond that (see ``pricing.transition_cost``)."""

    scale: float
    link_ms: float
    residual_ms: float
    region_ms: float
    networks: int

    def terms(self, device: DeviceSpec, table: TableKind = "blocks") -> dict[str, dict[str, float]]:
        """The ``device.yaml`` fields this fit sets (for ``table``)."""
        return {"int8_link_ms": {**device.int8_link_ms, table: self.link_ms},
                "int8_residual_ms": {**device.int8_residual_ms, table: self.residual_ms},
                "int8_region_ms": {**device.int8_region_ms, table: self.region_ms}}  # fmt: skip


PRIOR_NETWORKS = 4.0  # how many networks' worth of evidence a prior on the int8 terms counts for


def fit_int8(
    networks: Sequence[Timed], scales: Mapping[str, float], prior: Mapping[str, float] | None = None,
    prior_networks: float = PRIOR_NETWORKS,
) -> Int8Fit | None:  # fmt: skip
    """Least squares on the relative error of ``measured = known + s x int8 rows + link x links +
    residual x int8 residual blocks + region x regions`` over networks with int8 entries (all-int8 and mixed; their other entries at
    the ``scales`` already fitted), predicted with fused int8 edges and no link/region terms;
    None with fewer than 6 such networks (then :func:`fit_precision` alone fits int8).
    ``s`` is clamped to ``SCALE_BOUNDS`` (the other terms refitted with it fixed).

    ``prior`` (``link_ms``, ``residual_ms``, ``region_ms``: e.g. a table's own terms, fitted on
    many networks where it was profiled, rescaled to this machine) makes it a ridge fit: each term
    is pulled toward its prior as strongly as ``prior_networks`` networks would pull it (a
    deviation costs what it would cost that many typical networks), so with a few networks the
    terms stay near the prior and with many they follow the data. The factor ``s`` is not
    pulled."""
    from autocompress.hardware.pricing import int8_regions, residuals

    rows, known, meas = [], [], []
    for net in networks:
        pairs = list(zip(net.prediction.breakdown, net.precisions, strict=True))
        regions = int8_regions(list(net.precisions))
        if not regions:
            continue
        core = sum(c.latency_ms for c, q in pairs if q == "int8")
        keys = net.keys or ()
        res = sum(residuals(keys[a : b + 1]) for a, b in regions) if keys else 0
        rows.append((core, sum(b - a for a, b in regions), res, len(regions)))
        others = sum(c.latency_ms * scales.get(q, 1.0) for c, q in pairs if q != "int8")
        known.append(net.prediction.overhead_ms + net.prediction.transitions_ms + others)
        meas.append(net.measured_ms)
    if len(rows) < 6:
        return None
    x, k, m = np.array(rows, float), np.array(known), np.array(meas)
    w = 1 / m
    a, y = x * w[:, None], (m - k) * w
    if prior is not None:  # one extra row per term: sqrt(n) x a typical network's weight on it
        lam = np.sqrt(prior_networks) * np.mean(np.abs(a[:, 1:]), axis=0)
        target = np.array([prior.get(t, 0.0) for t in ("link_ms", "residual_ms", "region_ms")])
        a = np.vstack([a, np.column_stack([np.zeros(3), np.diag(lam)])])
        y = np.concatenate([y, lam * target])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    s = float(coef[0])
    if not SCALE_BOUNDS[0] <= s <= SCALE_BOUNDS[1]:
        s = min(SCALE_BOUNDS[1], max(SCALE_BOUNDS[0], s))
        y = y - s * a[:, 0]
        rest, *_ = np.linalg.lstsq(a[:, 1:], y, rcond=None)
        coef = np.array([s, *rest])
    return Int8Fit(round(s, 4), round(float(coef[1]), 6), round(float(coef[2]), 6), round(float(coef[3]), 6),
                   len(rows))


OVERHEAD_MIN_NETWORKS = 6  # fp32 networks a per-inference overhead is fitted from, at least


def fit_overhead(networks: Sequence[Timed]) -> tuple[float, float] | None:
    """The per-inference overhead (ms) and the factor on the rows together, from all-fp32
    networks: least squares on the relative error of ``measured = o + transitions + s x rows``.

    A table moved to another machine keeps its rows' shape but not its fixed cost per inference
    (the runtime's dispatch, the input and output copies), which does not scale with them: with
    the factor alone, small networks come out too fast and large ones too slow. ``o`` is kept at
    or above 0 and ``s`` within ``SCALE_BOUNDS`` (the other refitted with it fixed). None with
    fewer than ``OVERHEAD_MIN_NETWORKS`` all-fp32 networks, or when they do not differ in size
    enough to tell a fixed cost from a factor (largest under 1.5 x the smallest)."""
    nets = [n for n in networks if n.precisions and all(q == "fp32" for q in n.precisions)]
    if len(nets) < OVERHEAD_MIN_NETWORKS:
        return None
    b = np.array([sum(c.latency_ms for c in n.prediction.breakdown) for n in nets])
    t = np.array([n.prediction.transitions_ms for n in nets])
    m = np.array([n.measured_ms for n in nets])
    if b.min() <= 0 or b.max() < 1.5 * b.min():
        return None
    w = 1 / m
    coef, *_ = np.linalg.lstsq(np.column_stack([w, b * w]), (m - t) * w, rcond=None)
    o, s = float(coef[0]), float(coef[1])
    if o < 0:
        o, s = 0.0, _factor(m, t, b)
    if not SCALE_BOUNDS[0] <= s <= SCALE_BOUNDS[1]:
        s = min(SCALE_BOUNDS[1], max(SCALE_BOUNDS[0], s))
        o = max(0.0, float(np.sum((m - t - s * b) / m**2) / np.sum(1 / m**2)))
    return round(o, 6), round(s, 4)


def with_overhead(networks: Sequence[Timed], overhead_ms: float) -> list[Timed]:
    """``networks`` with their predictions' per-inference overhead replaced (what the other fits read)."""
    return [replace(n, prediction=replace(n.prediction, overhead_ms=overhead_ms)) for n in networks]


def fit_precision(networks: Sequence[Timed], precision: str, scales: Mapping[str, float]) -> float | None:
    """The factor ``s`` on ``precision``'s entries minimising the relative error of
    ``overhead + transitions + sum(scales[q] x other entries) + s x sum(precision's entries)``
    against the measured times (closed-form least squares), clamped to ``SCALE_BOUNDS`` and
    rounded to 4 digits; None when no network has an entry at ``precision``."""
    mine, known = [], []
    for net in networks:
        pairs = list(zip(net.prediction.breakdown, net.precisions, strict=True))
        mine.append(sum(c.latency_ms for c, q in pairs if q == precision))
        others = sum(c.latency_ms * scales.get(q, 1.0) for c, q in pairs if q != precision)
        known.append(net.prediction.overhead_ms + net.prediction.transitions_ms + others)
    b, k = np.array(mine), np.array(known)
    m = np.array([net.measured_ms for net in networks])
    if not np.any(b > 0):
        return None
    return round(min(SCALE_BOUNDS[1], max(SCALE_BOUNDS[0], _factor(m, k, b))), 4)


def _factor(measured: np.ndarray, known: np.ndarray, rows: np.ndarray) -> float:
    """The ``s`` minimising the relative error of ``known + s x rows`` against ``measured``."""
    return float(np.sum((measured - known) * rows / measured**2) / np.sum(rows**2 / measured**2))


def fit_scales(networks: Mapping[str, Sequence[Timed]]) -> dict[str, float]:
    """Factor per precision: fp32 first (on the networks timed for it, ideally all fp32), then
    each reduced precision on its networks, their other entries priced with the factors
    already fitted. A precision whose networks have no entry at it keeps 1."""
    order = sorted(networks, key=lambda p: p != "fp32")
    scales = dict.fromkeys(order, 1.0)
    for prec in order:
        fitted = fit_precision(networks[prec], prec, scales)
        if fitted is not None:
            scales[prec] = fitted
    return scales


def store_scale(folder: Path, table: TableKind, scales: float | dict[str, float], note: str) -> DeviceSpec:
    """Write the ``table``'s fitted factors into ``folder/device.yaml`` (with ``note``, how they
    were fitted, as ``host.<field>_fit``) and return the updated device."""
    name = SCALE_FIELDS[table]
    device = load_device(folder / "device.yaml")
    device = device.model_copy(update={name: scales, "host": {**device.host, f"{name}_fit": note}})
    save_device(folder, device)
    return device
