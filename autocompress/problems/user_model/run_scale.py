"""A per-run scale for a measured layer table: the user's original timed end to end here.

A layer timed alone costs more than inside a network (its activations are not in cache, its
neighbours' QDQ edges are not fused with it), by an amount that depends on the network: the
table's stored ``layer_scale`` was fitted on other networks. At search start the user's model
(fp32, and a copy with every int8-able part quantized) is timed with the table's runtime and
thread count, and ``layer_scale`` is fitted to it per precision with the generic fit
(:func:`autocompress.hardware.scale.fit_scales`); the run's trials are priced with that factor.
Only on measured tables whose host is this machine: another machine's timings say nothing of the
target, and estimated targets keep their calibration.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autocompress._io import atomic_path
from autocompress.hardware.host import cpu_model
from autocompress.hardware.layer_predict import predict_layers
from autocompress.hardware.layer_table import LayerSpec, LayerTable
from autocompress.hardware.lut import DeviceSpec
from autocompress.hardware.profile import GROUP
from autocompress.hardware.scale import SCALE_BOUNDS, Timed, fit_scales, unit_scale
from autocompress.runtime import RUNTIMES, measure_passes, pinned_cpus

RUN_BOUNDS = (0.1, 10.0)  # wider than a table's: this is the model itself, timed here
REPS = 200  # per pass: batch-1 runs of a small network take well under a millisecond
PASSES = 3
FILE = "latency_scale.json"  # beside the run's models: workers and --resume reuse it


@dataclass(frozen=True)
class Network:
    """The original at one precision mix: its layers, their precisions, its deployed file."""

    precision: str  # what this network fits: fp32, or the reduced precision it runs
    layers: Sequence[LayerSpec]
    precisions: Sequence[str]
    path: Path
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class RunScale:
    """The fitted factors, and for each network timed: predicted with the table's own scale
    (before), measured here (median and 10th percentile of the fastest pass), predicted with the
    fitted scale (after)."""

    layer_scale: dict[str, float]
    networks: dict[str, dict[str, float]]
    runtime: str
    threads: int
    reps: int
    passes: int
    cpu: str
    table_scale: dict[str, float] = field(default_factory=dict)

    def apply(self, device: DeviceSpec) -> DeviceSpec:
        return device.model_copy(update={"layer_scale": dict(self.layer_scale)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunScale:
        return cls(**raw)

    def save(self, folder: Path) -> Path:
        with atomic_path(folder / FILE) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
        return folder / FILE

    @classmethod
    def load(cls, folder: Path) -> RunScale | None:
        path = folder / FILE
        if not path.is_file():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def why_not_here(device: DeviceSpec) -> str | None:
    """Why the table's scale cannot be fitted on this machine (None: it can)."""
    if device.source != "measured":
        return f"{device.name} is {device.source}: its scale is calibrated, not timed here"
    if device.runtime not in RUNTIMES:
        return f"{device.name} runs {device.runtime}, which this machine cannot time"
    # a table measured on another machine is fitted too: the run's scale times the model itself
    # here, so it is what carries the table over to this machine (as host_fit does for spaces)
    return None


def fit_run_scale(device: DeviceSpec, table: LayerTable, networks: Sequence[Network], *,
                  reps: int = REPS, passes: int = PASSES, batch: int = 1) -> RunScale:  # fmt: skip
    """Time ``networks`` end to end as the table was timed (its runtime, threads, pinning) and fit
    ``layer_scale`` per precision to their medians: fp32 first, then each reduced precision with
    its network's fp32 entries at the fitted fp32 factor. A precision no network fits keeps the
    table's factor."""
    threads = int(device.host.get("threads") or 1)
    pin = threads if device.host.get("pinned_cpus") else 0
    with pinned_cpus(pin):
        timings = measure_passes([n.path for n in networks], [n.input_shape for n in networks], passes=passes,
                                 group=GROUP, threads=threads, reps=reps, runtime=device.runtime)  # fmt: skip
    fitted = _fit(device, table, networks, [t.median_ms for t in timings], batch)
    table_scale = {p: device.scale(p, "layers") for p in device.precisions}
    scales = {**table_scale, **fitted}
    after = device.model_copy(update={"layer_scale": scales})
    report: dict[str, dict[str, float]] = {}
    for net, t in zip(networks, timings, strict=True):
        before = predict_layers(device, table, net.layers, net.precisions, batch=batch).latency_ms
        now = predict_layers(after, table, net.layers, net.precisions, batch=batch).latency_ms
        report[net.precision] = {
            "predicted_before_ms": round(before, 5), "measured_ms": round(t.median_ms, 5),
            "measured_p10_ms": round(t.p10_ms, 5), "measured_p90_ms": round(t.p90_ms, 5),
            "predicted_after_ms": round(now, 5), "error_before_pct": round(100 * (before / t.median_ms - 1), 1),
            "error_after_pct": round(100 * (now / t.median_ms - 1), 1),
        }  # fmt: skip
    return RunScale(scales, report, device.runtime, threads, reps, passes, cpu_model(), table_scale)


def _fit(device: DeviceSpec, table: LayerTable, networks: Sequence[Network], measured: Sequence[float],
         batch: int) -> dict[str, float]:  # fmt: skip
    """:func:`fit_scales` per precision, repeated from the factors found while one stops at the
    generic fit's bounds (a table's factor outside them means a wrong table; here the network is
    the model itself), within ``RUN_BOUNDS``."""
    total: dict[str, float] = {}
    for _ in range(4):
        current = unit_scale(device, "layers").model_copy(update={"layer_scale": {**total}} if total else {})
        groups: dict[str, list[Timed]] = {}
        for net, ms in zip(networks, measured, strict=True):
            pred = predict_layers(current, table, net.layers, net.precisions, batch=batch)
            groups.setdefault(net.precision, []).append(Timed(pred, net.precisions, ms))
        step = fit_scales(groups)
        total = {p: round(min(RUN_BOUNDS[1], max(RUN_BOUNDS[0], total.get(p, 1.0) * f)), 4) for p, f in step.items()}
        if all(SCALE_BOUNDS[0] < f < SCALE_BOUNDS[1] for f in step.values()):
            break
    return total
