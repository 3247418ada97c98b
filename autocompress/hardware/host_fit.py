"""Re-calibrate a measured block table to this machine when it was measured on another one.

A measured table's rows are only as good as the machine they were timed on (``device.yaml:
host``). When this machine differs (CPU model, logical CPU count, or machine id: a VM of the
same CPU model elsewhere is another machine, and a table that does not record its machine is
treated as another's; see ``host.machine_id``), before the first trial the
search (and ``validate-latency``) times a few reference networks of the space end to end here
(fp32, all-int8 and mixed, ≤ ``BUDGET_S`` s with their export: ``NETWORKS`` per mode, and as
many again when that took under ``ROUND_SHARE`` of the budget; ``MIN_NETWORKS`` per mode in
any case), measures the int8 entry/exit costs here on the activation shapes of those networks
(``hardware/qdq.py``), and fits the table's per-inference ``overhead_ms`` with its fp32 factor
on the all-fp32 networks (``scale.fit_overhead``: the fixed cost does not scale with the rows
from one machine to another), its ``block_scale`` per precision to those timings
(``scale.fit_scales``) and its int8 link/residual/region terms (``scale.fit_int8``:
pulled toward the table's own terms rescaled to this machine when it has them, see
:func:`table_prior`). The fit is cached per table and host in ``<cache>/host_fits``
(written atomically; the installed tables are never written), so it runs once per host and
table, not per search. Where it cannot run (``--no-recalibrate``, a runtime not installed) one
line says the figures come from another machine and how to profile this one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autocompress._io import atomic_write_text
from autocompress.arch import block_precisions, plan
from autocompress.hardware.host import cpu_model, machine_id
from autocompress.hardware.layer_fill import same_host
from autocompress.hardware.lut import BlockKey, DeviceSpec, EdgeCost, ErrorBand, LatencyTable
from autocompress.hardware.predict import predict
from autocompress.hardware.qdq import measure_edges
from autocompress.hardware.scale import Timed, fit_int8, fit_overhead, fit_scales, unit_scale, with_overhead
from autocompress.hardware.targets import Target, default_user_tables
from autocompress.hardware.validate import GROUP
from autocompress.runtime import measure_passes, pinned_cpus, runtime_version
from autocompress.space import SearchSpace, space_arg

BUDGET_S = 30.0  # the whole re-calibration, export included
SEED = 2_000_003  # reference networks: disjoint from validate-latency's (0) and profile's fit (1_000_003)
NETWORKS = 8  # per precision mode and round, at most (fewer when the budget runs out)
ROUNDS = 2  # a second round of as many networks when the first took under ROUND_SHARE of the budget
ROUND_SHARE = 0.45
MIN_NETWORKS = 3  # per mode, timed even past the budget (a fit needs them: int8's needs 6 int8 + mixed)
UNSTEADY_MAPE_PCT = 10.0  # a fit missing its own networks by more (MAPE, any mode) says the timings were unsteady
FIT_VERSION = 3  # in the cache key: fits made by an older fit_host are not reused (3: the overhead is fitted)
REPS, PASSES = 50, 3  # as validate-latency and profile's fit time networks: fewer runs read slower under load
MODES = ("fp32", "int8", "mixed")


def host_fits_dir() -> Path:
    """``<cache>/host_fits``: beside the user tables folder, always the user's own."""
    return default_user_tables().parent / "host_fits"


def this_host(runtime: str) -> dict[str, Any]:
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "machine": machine_id(),
            runtime: runtime_version(runtime)}  # fmt: skip


def measured_here(device: DeviceSpec) -> bool:
    """Whether ``device`` (a measured table) was profiled on this very machine: same CPU model and
    logical CPU count, and the same :func:`~autocompress.hardware.host.machine_id` (a table that
    does not record one, or another VM of the same CPU model, is another machine)."""
    return same_host(device) and str(device.host.get("machine", "")) == machine_id()


def table_digest(target: Target) -> str:
    """What a fit is valid for: the table's files and this machine."""
    h = hashlib.sha256(f"fit {FIT_VERSION}".encode())
    for name in ("device.yaml", "blocks.csv"):
        path = target.folder / name
        h.update(path.read_bytes() if path.is_file() else b"")
    h.update(json.dumps(this_host(target.device.runtime), sort_keys=True).encode())
    return h.hexdigest()[:16]


@dataclass
class HostFit:
    """A table re-calibrated to this machine: what was fitted, on what, and how well."""

    target: str
    digest: str
    host: dict[str, Any]
    table_host: dict[str, Any]
    block_scale: dict[str, float]
    int8_entry: dict[str, float] | None
    int8_exit: dict[str, float] | None
    networks: dict[str, int]
    before_mape_pct: dict[str, float]
    after_mape_pct: dict[str, float]
    seconds: float
    space: str
    date: str
    int8_terms: dict[str, dict[str, float]] = field(default_factory=dict)  # int8_link_ms, ... as in device.yaml
    error_band: dict[str, dict[str, Any]] = field(default_factory=dict)
    overhead_ms: float | None = None  # the per-inference overhead here (None: the table's kept)
    not_repeated: int = 0  # reference networks whose fastest timing no second pass repeated

    def apply(self, device: DeviceSpec) -> DeviceSpec:
        """``device`` with this machine's factors, int8 entry/exit costs and (once validated here) band."""
        # the label every figure carries says the rows were re-fitted here (targets.source_label)
        nets = sum(self.networks.values())
        update: dict[str, Any] = {"block_scale": dict(self.block_scale), "host": {
            **device.host, "recalibrated_to": f"{self.host.get('cpu')}, on {nets} reference networks timed here"}}
        if self.overhead_ms is not None:
            update["overhead_ms"] = self.overhead_ms
        if self.int8_entry is not None and self.int8_exit is not None:
            update |= {"int8_entry": EdgeCost(**self.int8_entry), "int8_exit": EdgeCost(**self.int8_exit)}
        update |= self.int8_terms
        if self.error_band:
            update["error_band"] = {k: ErrorBand(**v) for k, v in self.error_band.items()}
        return device.model_copy(update=update)

    def line(self) -> str:
        """One line for the run's output."""
        nets = sum(self.networks.values())
        err = ", ".join(f"{p} {self.before_mape_pct[p]:.0f}% -> {self.after_mape_pct[p]:.0f}%"
                        for p in self.after_mape_pct)  # fmt: skip
        scales = ", ".join(f"{p} x{s:.3f}" for p, s in self.block_scale.items())
        return (f"{self.target} was measured on another machine ({self.table_host.get('cpu')!r}, "
                f"{self.table_host.get('logical_cpus')} logical CPUs, machine {self.table_host.get('machine') or 'unrecorded'}); "
                f"re-calibrated to this one ({self.host['cpu']!r}, {self.host['logical_cpus']}, machine {self.host['machine']}) "
                f"on {nets} reference networks timed here in {self.seconds:.0f} s: block_scale {scales}"
                + (f", overhead {1000 * self.overhead_ms:.1f} us" if self.overhead_ms is not None else "")
                + f"; error on them {err} (MAPE)"
                + (f"; {self.not_repeated} of {nets} timings did not repeat within 5%" if self.not_repeated else "")
                + self.unsteady_note())  # fmt: skip

    def unsteady_note(self) -> str:
        """A warning appended to the line when the fit misses its own networks by more than
        ``UNSTEADY_MAPE_PCT``: no table fits timings that disagree with each other, so this
        machine's speed changed while they were taken, and the factors may carry it."""
        worst = max(self.after_mape_pct.values(), default=0.0)
        if worst <= UNSTEADY_MAPE_PCT:
            return ""
        return (f" -- WARNING: the fit still misses its own reference networks by {worst:.0f}%: this machine's speed "
                f"changed while they were timed, so the figures may be off by as much; delete {self.path()} to "
                f"re-calibrate on a quiet machine, or profile this one")  # fmt: skip

    def path(self) -> Path:
        return host_fits_dir() / f"{self.target}-{self.digest}.json"

    def save(self) -> Path | None:
        """Write atomically; None when the cache folder cannot be written (the fit still applies)."""
        try:
            self.path().parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path(), json.dumps(asdict(self), indent=1) + "\n")
        except OSError:
            return None
        return self.path()

    @classmethod
    def load(cls, target: Target) -> HostFit | None:
        path = host_fits_dir() / f"{target.name}-{table_digest(target)}.json"
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def why_not_fit(device: DeviceSpec) -> str | None:
    """Why this table cannot be re-calibrated here (None: it can)."""
    if device.runtime not in ("onnxruntime", "openvino") or importlib.util.find_spec(device.runtime) is None:
        return f"{device.runtime} is not installed here"
    return None


def profile_command(device: DeviceSpec, space: SearchSpace) -> str:
    """What measures this machine into the table ``device`` names: ``--replace``, as its rows were
    timed on another machine (a merge with them is refused)."""
    threads = int(device.host.get("threads") or 1)
    named = space_arg(space.path) if space.path is not None else space.name  # a space file by its path
    return (f"autocompress profile --space {named} --runtime {device.runtime} --threads {threads} "
            f"--name {device.name} --replace")  # fmt: skip


def other_machine_line(device: DeviceSpec, space: SearchSpace, why: str) -> str:
    """The one line shown when a table from another machine is used as it is."""
    return (f"latency figures of {device.name} come from another machine ({device.host.get('cpu', 'unknown')!r}, "
            f"{device.host.get('logical_cpus', '?')} logical CPUs, machine {device.host.get('machine') or 'unrecorded'}), "
            f"not re-calibrated ({why}); measure this one "
            f"with '{profile_command(device, space)}'")  # fmt: skip


def with_device(target: Target, device: DeviceSpec) -> Target:
    """``target`` pricing with ``device`` (its rows unchanged)."""
    new = Target(folder=target.folder, device=device)
    new.table = LatencyTable(device=device, rows=target.table.rows, folder=target.folder)  # type: ignore[misc]
    return new


def edge_shapes(blocks: list[Any]) -> list[tuple[int, int, int]]:
    """(C, H, W) of each block's input and output activation: where int8 regions may start or end."""
    return [(b.in_c, b.in_h, b.in_w) for b in blocks] + [(b.out_c, b.out_h, b.out_w) for b in blocks]


def table_prior(device: DeviceSpec, scales: dict[str, float]) -> dict[str, float] | None:
    """The table's own int8 link/residual/region terms (fitted where it was profiled, on many more
    networks than a re-calibration times) rescaled to this machine by the ratio of the fp32 factors
    (this machine's fitted one over the table's), as the prior of :func:`scale.fit_int8`; None when
    the table has none of them (then the terms are fitted from the reference networks alone)."""
    fields = {"link_ms": device.int8_link_ms, "residual_ms": device.int8_residual_ms,
              "region_ms": device.int8_region_ms}  # fmt: skip
    if not any("blocks" in v for v in fields.values()):
        return None
    ratio = scales.get("fp32", 1.0) / device.scale("fp32", "blocks")
    return {k: v.get("blocks", 0.0) * ratio for k, v in fields.items()}


def fit_host(
    target: Target, space: SearchSpace, *, channels: int = 1, classes: int = 10, budget_s: float = BUDGET_S,
    networks: int = NETWORKS, on_progress: Callable[[int, int], None] | None = None,
) -> HostFit:  # fmt: skip
    """Time reference networks of ``space`` here and fit the table to this machine (see the module doc)."""
    from autocompress.hardware.validate import build_model, candidates

    t0 = time.perf_counter()
    dev = target.device
    threads = int(dev.host.get("threads") or 1)
    pin = threads if dev.host.get("pinned_cpus") else 0
    modes = [m for m in MODES if m == "mixed" or m in dev.precisions]
    if "int8" not in dev.precisions:
        modes = ["fp32"]
    total = 1 + ROUNDS * networks * len(modes) + 1
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done, total)

    pools = {m: candidates(space, ROUNDS * networks, m, list(dev.precisions), SEED) for m in modes}
    entry = exit_ = None
    with pinned_cpus(pin):
        if "int8" in dev.precisions:  # the activation shapes of this space's networks, not of the whole table
            shapes = [s for pool in pools.values() for cand in pool for s in edge_shapes(plan(cand, space, channels, classes))]
            entry, exit_, _ = measure_edges(shapes, threads=threads, reps=REPS, passes=PASSES, runtime=dev.runtime)
        tick()
        fitted = dev.model_copy(update={"int8_entry": entry, "int8_exit": exit_}) if entry else dev
        unit = with_device(target, unit_scale(fitted, "blocks")).table
        stored = target.table
        built: list[tuple[str, Any, Any, Any, Any]] = []
        timings: list[Any] = []
        with tempfile.TemporaryDirectory() as tmp:
            for rnd in range(ROUNDS):  # each round's networks exported then timed; the next only with time left
                if rnd and time.perf_counter() - t0 > ROUND_SHARE * budget_s:
                    break
                paths, shapes_in = [], []
                for i in range(rnd * networks, (rnd + 1) * networks):  # round-robin over modes
                    for mode in modes:
                        late = i >= MIN_NETWORKS and time.perf_counter() - t0 > 0.7 * budget_s
                        if i >= len(pools[mode]) or late:
                            continue
                        cand = pools[mode][i]
                        blocks = plan(cand, space, channels, classes)
                        prec = block_precisions(cand, space, blocks)
                        built.append((mode, blocks, prec, predict(unit, blocks, prec), predict(stored, blocks, prec)))
                        paths.append(build_model(cand, space, channels, classes, Path(tmp), f"h{len(built)}"))
                        shapes_in.append((1, channels, cand.resolution, cand.resolution))
                        tick()
                if paths:
                    timings += measure_passes(paths, shapes_in, passes=PASSES, group=GROUP, threads=threads,
                                              reps=REPS, runtime=dev.runtime, seed=SEED + rnd)  # fmt: skip
    groups: dict[str, list[Timed]] = {}
    for (mode, blocks, prec, pred, _), t in zip(built, timings, strict=True):
        groups.setdefault(mode, []).append(Timed(pred, prec, t.p10_ms, [BlockKey.of(b, q) for b, q in zip(blocks, prec)]))
    mixed = groups.pop("mixed", [])
    overhead = fit_overhead(groups.get("fp32", []))
    if overhead is not None:  # the other fits read the predictions with this machine's overhead
        groups = {m: with_overhead(g, overhead[0]) for m, g in groups.items()}
        mixed = with_overhead(mixed, overhead[0])
    scales = fit_scales(groups)
    int8 = fit_int8([*groups.get("int8", []), *mixed], scales, table_prior(dev, scales)) if entry is not None else None
    terms: dict[str, Any] = {"block_scale": scales}
    if overhead is not None:
        terms["overhead_ms"] = overhead[0]
    if int8 is not None:
        scales["int8"] = int8.scale
        terms |= int8.terms(dev)
    after = with_device(target, fitted.model_copy(update=terms)).table
    before_err: dict[str, list[float]] = {}
    after_err: dict[str, list[float]] = {}
    for (mode, blocks, prec, _, old), t in zip(built, timings, strict=True):
        before_err.setdefault(mode, []).append(abs(old.latency_ms / t.p10_ms - 1))
        after_err.setdefault(mode, []).append(abs(predict(after, blocks, prec).latency_ms / t.p10_ms - 1))
    done = total - 1  # the rounds not run
    tick()
    return HostFit(
        target=dev.name, digest=table_digest(target), host=this_host(dev.runtime),
        table_host={k: dev.host.get(k) for k in ("cpu", "logical_cpus", "machine", "threads", dev.runtime, "date")},
        block_scale=scales, overhead_ms=overhead[0] if overhead else None,
        not_repeated=sum(not t.repeated for t in timings),
        int8_entry=entry.model_dump() if entry else None,
        int8_terms=int8.terms(dev) if int8 else {},
        int8_exit=exit_.model_dump() if exit_ else None,
        networks={m: sum(1 for b in built if b[0] == m) for m in modes},
        before_mape_pct={m: round(100 * float(np.mean(v)), 1) for m, v in before_err.items()},
        after_mape_pct={m: round(100 * float(np.mean(v)), 1) for m, v in after_err.items()},
        seconds=round(time.perf_counter() - t0, 1), space=space.name,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip


@dataclass(frozen=True)
class HostCheck:
    """What :func:`on_this_host` did: the target to price with, one line to show (None when the
    table was measured here), and the fit (None where none applies)."""

    target: Target
    line: str | None
    fit: HostFit | None
    cached: bool = False

    def to_config(self) -> dict[str, Any]:
        if self.fit is None:
            if self.target.device.source != "measured":  # an estimated table: no machine here to fit it to
                return {"status": f"{self.target.device.source} (nothing to re-calibrate)", "line": None}
            return {"status": "measured here" if self.line is None else "not re-calibrated", "line": self.line}
        return {"status": "re-calibrated" + (" (cached)" if self.cached else ""), "line": self.line,
                "file": str(self.fit.path()), **asdict(self.fit)}  # fmt: skip


def on_this_host(
    target: Target, space: SearchSpace, *, channels: int = 1, classes: int = 10, recalibrate: bool = True,
    networks: int = NETWORKS, on_progress: Callable[[int, int], None] | None = None,
) -> HostCheck:  # fmt: skip
    """The target as it should price on this machine: unchanged when its table was measured here
    (or is not measured at all); else re-calibrated (from the cache when this host already fitted
    this table), or unchanged with the one line that says so."""
    dev = target.device
    if dev.source != "measured" or measured_here(dev):
        return HostCheck(target, None, None)
    if not recalibrate:
        return HostCheck(target, other_machine_line(dev, space, "--no-recalibrate"), None)
    why = why_not_fit(dev)
    if why is not None:
        return HostCheck(target, other_machine_line(dev, space, why), None)
    cached = HostFit.load(target)
    fit = cached or fit_host(target, space, channels=channels, classes=classes, networks=networks,
                             on_progress=on_progress)  # fmt: skip
    line = fit.line()
    if cached is None and fit.save() is None:
        line += f" (could not cache it in {host_fits_dir()}: fitted again next time)"
    elif cached is not None:
        line += f" (cached in {fit.path()})"
    return HostCheck(with_device(target, fit.apply(dev)), line, fit, cached is not None)


def apply_cached(target: Target) -> Target:
    """``target`` with this host's cached fit applied, if there is one (Ray workers, reports)."""
    if target.device.source != "measured" or measured_here(target.device):
        return target
    fit = HostFit.load(target)
    return with_device(target, fit.apply(target.device)) if fit else target
