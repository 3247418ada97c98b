"""Latency intervals: the range a predicted latency stands for, from the held-out error band a
table records (``device.yaml`` ``error_band``, per precision, ``all`` as fallback).

A band is built by :func:`band_of` from the held-out errors themselves (order statistics, not
interpolated percentiles), so that it holds at least :data:`TARGET_COVERAGE` of them and records
the share it actually holds (``coverage``). A network run in one precision takes that precision's
band; a network mixing precisions takes the widest range over the bands of the precisions it uses
(low end of the lowest, high end of the highest). A table that records no band for a precision gives no interval: nothing is invented,
and :data:`NO_BAND` says so wherever the interval would be shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from autocompress.hardware.lut import DeviceSpec, ErrorBand

NO_BAND = "no held-out error on record for this table"
INTERVAL_COLUMNS = ("latency_lo_ms", "latency_hi_ms")
TARGET_COVERAGE = 0.8  # the least share of its held-out errors a band holds
FEW_ERRORS = 5  # a band over fewer held-out errors is described as a rough range


def band_of(
    errors: Iterable[float], basis: str, *, target: float = TARGET_COVERAGE, digits: int = 1, **fields: Any
) -> ErrorBand:
    """The error band of held-out ``errors`` (% as ``actual = predicted x (1 + pct/100)``): the
    order statistics left after dropping ``k = floor(n (1 - target) / 2)`` errors from each tail
    (so with fewer than 10 errors at 80%, the lowest and the highest), rounded outwards to
    ``digits`` decimals. At least ``ceil(target n)`` of the errors lie within it; ``coverage`` is
    the share that does. ``fields``: the band's other fields (``within``, ``host``, ...)."""
    vals = sorted(float(e) for e in errors)
    n = len(vals)
    if not n:
        raise ValueError("an error band needs at least one held-out error")
    k = math.floor(n * (1 - target) / 2 + 1e-9)
    scale = 10**digits
    lo = math.floor(vals[k] * scale + 1e-6) / scale
    hi = math.ceil(vals[n - 1 - k] * scale - 1e-6) / scale
    inside = sum(lo - 1e-9 <= v <= hi + 1e-9 for v in vals)
    return ErrorBand(lo_pct=lo, hi_pct=hi, coverage=round(inside / n, 4), n=n, basis=basis, **fields)


def inside_count(band: ErrorBand) -> int:
    """How many of the band's ``n`` held-out errors lie within it."""
    return round(band.coverage * band.n)


def network_band(device: DeviceSpec, precisions: Iterable[str]) -> ErrorBand | None:
    """The band of a network whose entries run in ``precisions`` (None when any lacks one): a
    network mixing precisions takes the table's ``mixed`` band where it records one (a
    ``validate-latency --precision mixed``, held-out networks of that very kind)."""
    used = sorted(set(precisions))
    if len(used) > 1 and device.error_band.get("mixed") is not None:
        return device.error_band["mixed"]
    bands = [device.band(p) for p in used]
    if not bands or any(b is None for b in bands):
        return None
    if len(bands) == 1:
        return bands[0]
    known = [b for b in bands if b is not None]
    basis = "widest of " + "; ".join(f"{p}: {b.basis}" for p, b in zip(used, known, strict=True))
    # the widest range holds at least what each band holds of its own errors: state the least of them
    least = min(known, key=lambda b: (b.coverage, -b.n))
    return ErrorBand(lo_pct=min(b.lo_pct for b in known), hi_pct=max(b.hi_pct for b in known),
                     coverage=least.coverage, n=least.n, basis=basis)  # fmt: skip


def interval(device: DeviceSpec, precisions: Iterable[str], latency_ms: float) -> tuple[float, float] | None:
    """(low, high) ms a prediction of ``latency_ms`` stands for, or None without a band."""
    band = network_band(device, precisions)
    return None if band is None else band.interval(latency_ms)


def interval_columns(device: DeviceSpec, precisions: Iterable[str], latency_ms: float) -> dict[str, float | None]:
    """``latency_lo_ms`` / ``latency_hi_ms`` of a trials-table row (None without a band)."""
    iv = interval(device, precisions, latency_ms)
    return dict(zip(INTERVAL_COLUMNS, iv if iv is not None else (None, None), strict=True))


def band_key(precisions: Iterable[str]) -> str:
    """Which precisions' bands a network's interval was taken from, e.g. ``fp32`` or ``fp32+int8``
    (a trials-table row's ``latency_band``: what its model card and the explorer describe)."""
    return "+".join(sorted(set(precisions)))


def describe_band(band: ErrorBand | None) -> str:
    """One phrase: how many held-out errors the band holds, how wide it is and what it rests on,
    e.g. ``5 of 6 held-out errors within -3.1%..+25.8% (basis)``, or :data:`NO_BAND`."""
    if band is None:
        return NO_BAND
    few = " (few held-out errors: a rough range)" if band.n < FEW_ERRORS else ""
    return (f"{inside_count(band)} of {band.n} held-out errors within {band.lo_pct:+.1f}%..{band.hi_pct:+.1f}%"
            f"{few} ({band.basis})")  # fmt: skip


def bands_entry(device: DeviceSpec) -> dict[str, Any]:
    """What a run's config.yaml records of the target's bands (empty when it has none)."""
    return {p: b.model_dump(mode="json", exclude_none=True) for p, b in device.error_band.items()}


def row_interval(row: Any) -> tuple[float, float] | None:
    """A trials-table row's interval (a dict or a pandas Series), None where the row has none
    (no band, or a run written before the columns existed)."""
    try:
        lo, hi = row.get("latency_lo_ms"), row.get("latency_hi_ms")
    except AttributeError:
        return None
    if lo is None or hi is None:
        return None
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(lo) or math.isnan(hi) else (lo, hi)
