"""Check a measured latency table against reality: build random candidates of a space, export
each as the search would deploy it, time it end to end with the table's runtime on this
machine, and compare with what the table predicts.

Writes ``validation.json`` (summary + every point), ``validation.csv`` and ``validation.png``
(predicted vs measured, with the ±10% band).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch.nn as nn

from autocompress import __version__
from autocompress._io import atomic_path, atomic_write_text
from autocompress.arch import block_precisions, plan
from autocompress.exceptions import BadInputError
from autocompress.hardware.host import cpu_model
from autocompress.hardware.interval import band_of
from autocompress.hardware.lut import BlockKey, ErrorBand, load_device, save_device
from autocompress.hardware.predict import predict
from autocompress.hardware.pricing import fused_int8
from autocompress.hardware.scale import Int8Fit, Timed, fit_int8, fit_scales, unit_scale
from autocompress.hardware.targets import PRECISION_MODES, Target, check_measured_here

if TYPE_CHECKING:
    from autocompress.hardware.host_fit import HostFit
from autocompress.runtime import export_onnx, measure_passes, pinned_cpus
from autocompress.space import Candidate, SearchSpace

log = logging.getLogger(__name__)

GROUP = 10  # models timed interleaved with each other
TOLERANCE = 0.10
LEVEL_SHIFT_PCT = 5.0  # a median error beyond this, with a good ranking, is the level moving (see level_shift_note)


@dataclass(frozen=True)
class Point:
    """One candidate: what the table predicted and what this machine measured."""

    candidate: str
    precisions: str
    macs: int
    predicted_ms: float
    measured_ms: float  # 10th percentile of the timed runs, as the table's rows
    measured_median_ms: float
    measured_p90_ms: float
    interpolated_blocks: int
    timed_passes: int = 1  # passes it was timed in (3, more where its fastest was not repeated)
    repeated: bool = True  # whether a second pass repeated its fastest (``runtime.measure_passes``)

    @property
    def error(self) -> float:
        """Signed relative error of the prediction, (predicted - measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@dataclass
class Validation:
    target: str
    runtime: str
    runtime_version: str
    table_cpu: str
    cpu: str
    threads: int
    precision: str
    space: str
    seed: int
    reps: int
    passes: int = 1
    points: list[Point] = field(default_factory=list)
    date: str = ""
    host_fit: dict[str, object] = field(default_factory=dict)  # what on_this_host did before timing

    @property
    def errors(self) -> np.ndarray:
        return np.array([p.error for p in self.points])

    @property
    def within(self) -> float:
        """Share of candidates predicted within ±10% of the measured latency."""
        return float(np.mean(np.abs(self.errors) <= TOLERANCE + 1e-12)) if self.points else math.nan

    @property
    def within_repeated(self) -> float:
        """The same share over the candidates whose timing repeated (``Point.repeated``): how the
        table does where this machine's own timing can be trusted (nan when none repeated)."""
        errs = [abs(p.error) <= TOLERANCE + 1e-12 for p in self.points if p.repeated]
        return float(np.mean(errs)) if errs else math.nan

    @property
    def mape(self) -> float:
        """Mean absolute percentage error, in percent."""
        return float(100 * np.mean(np.abs(self.errors))) if self.points else math.nan

    @property
    def bias(self) -> float:
        """Median signed error, in percent (positive: the table over-predicts)."""
        return float(100 * np.median(self.errors)) if self.points else math.nan

    @property
    def within_level_removed(self) -> float:
        """The share within ±10% once every prediction is moved by the median error (the level):
        how well the table's shape fits. Far above :attr:`within` with a good ranking, the misses
        are one shift of the whole level, which is this machine's speed moving since the table
        was timed (other load, clock, a VM neighbour), not the table."""
        if not self.points:
            return math.nan
        level = np.median(self.errors)
        return float(np.mean(np.abs((1 + self.errors) / (1 + level) - 1) <= TOLERANCE + 1e-12))

    def level_shift_note(self) -> str | None:
        """One line when the whole level moved (median error beyond ±5% while the ranking holds,
        Spearman >= 0.98); None otherwise."""
        if len(self.points) < 3 or abs(self.bias) <= LEVEL_SHIFT_PCT or not self.spearman >= 0.98:
            return None
        way = "slower" if self.bias < 0 else "faster"
        return (f"the candidates ran about {abs(self.bias):.0f}% {way} than predicted (median) while the ranking held "
                f"(Spearman {self.spearman:.3f}); with that level taken out, {100 * self.within_level_removed:.0f}% "
                f"are within ±10% (against {100 * self.within:.0f}%). One shift of the whole level is this "
                "machine's speed moving since the table was timed or fitted here (other load, clock, a VM "
                "neighbour), not the table's shape: validate again on a quiet machine before profiling again")  # fmt: skip

    @property
    def spearman(self) -> float:
        """Rank correlation of predicted and measured latency (what the search's ranking needs)."""
        if len(self.points) < 3:
            return math.nan
        from scipy.stats import spearmanr

        pred = [p.predicted_ms for p in self.points]
        meas = [p.measured_ms for p in self.points]
        return float(spearmanr(pred, meas).statistic)

    def summary(self) -> dict[str, object]:
        return {
            "target": self.target,
            "runtime": f"{self.runtime} {self.runtime_version}",
            "precision": self.precision,
            "candidates": len(self.points),
            "within_10pct": round(self.within, 4),
            "mape_pct": round(self.mape, 2),
            "median_error_pct": round(self.bias, 2),
            "spearman": round(self.spearman, 4),
            "threads": self.threads,
            "cpu": self.cpu,
            "table_cpu": self.table_cpu,
            "host_fit": self.host_fit.get("status", "measured here"),
            "not_repeated": sum(not p.repeated for p in self.points),
            "within_10pct_repeated": round(self.within_repeated, 4),
            "within_10pct_level_removed": round(self.within_level_removed, 4),
        }

    def band(self) -> ErrorBand:
        """The error band of these predictions (``lut.ErrorBand``, from ``interval.band_of``): the
        range of (measured / predicted - 1) in % that holds at least 80% of the candidates, the
        share it holds, the share within ±5/10/20%, on this machine."""
        ratio = np.array([p.measured_ms / p.predicted_ms - 1 for p in self.points])
        how = "after re-calibration to this host" if str(self.host_fit.get("status", "")).startswith("re-cal") else ""
        return band_of(
            100 * ratio, digits=2,
            basis=(f"validate-latency: {len(self.points)} random {self.space} candidates ({self.precision}, seed "
                   f"{self.seed}) timed end to end with {self.runtime} {self.runtime_version}, {self.threads} "
                   f"thread(s), 10th percentile of {self.reps} runs, fastest of {self.passes} passes (more until repeated)"
                   + (f", {how}" if how else "")),
            host={"cpu": self.cpu, "logical_cpus": os.cpu_count(), "threads": self.threads, "date": self.date},
            within={str(k): round(float(np.mean(np.abs(ratio) <= k / 100 + 1e-12)), 4) for k in (5, 10, 20)},
            median_abs_pct=round(float(np.median(np.abs(100 * ratio))), 2),
        )  # fmt: skip


def candidates(space: SearchSpace, n: int, mode: str, precisions: list[str], seed: int) -> list[Candidate]:
    """``n`` distinct random candidates (architecture + compression), precisions per ``mode``."""
    if mode not in PRECISION_MODES:
        raise BadInputError(f"--precision must be one of {', '.join(PRECISION_MODES)}; got {mode!r}")
    if mode != "mixed" and mode not in precisions:
        raise BadInputError(f"the table has no {mode} rows (it has {', '.join(precisions)})")
    rng = random.Random(seed)
    found: dict[tuple, Candidate] = {}
    for _ in range(50 * n):
        cand = space.random(rng)
        if mode != "mixed":
            cand = replace(cand, precision=tuple(mode for _ in cand.precision))
        elif any(p not in precisions for p in cand.precision):
            continue
        # the fine-tune settings do not change the deployed graph: one of each network
        key = (cand.resolution, cand.stem_width, cand.stages, cand.precision, cand.prune)
        found.setdefault(key, cand)
        if len(found) == n:
            break
    return list(found.values())


def build_model(
    cand: Candidate, space: SearchSpace, channels: int, classes: int, folder: Path, name: str,
    runtime: str = "onnxruntime",
) -> Path:  # fmt: skip
    """Export ``cand``'s network (random weights, realistic BN statistics) as the search would
    deploy it for a ``runtime`` target: ONNX with fp16 parts in half precision, then int8 QDQ for
    the int8 stages."""
    from autocompress.compress import finalize
    from autocompress.supernet import SubNet

    blocks = plan(cand, space, channels, classes)
    net = SubNet(blocks, [0.5] * channels, [0.5] * channels)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.data = m.running_mean.new_tensor(rng.normal(0, 0.1, m.num_features))
            m.running_var.data = m.running_var.new_tensor(rng.uniform(0.5, 1.5, m.num_features))
    from autocompress.compress import for_export

    fp32 = export_onnx(
        for_export(net.eval(), cand, space), folder / f"{name}.fp32.onnx", channels=channels,
        resolution=cand.resolution,
    )  # fmt: skip
    if "int8" not in cand.precision:
        return fp32
    calib = rng.random((32, channels, cand.resolution, cand.resolution), dtype=np.float32)
    # TensorRT needs zero-point-0 activations; the CPU tables' blocks were profiled with ONNX
    # Runtime's QDQ file (OpenVINO's too), so their networks are quantized the same way
    quantizer = "tensorrt" if runtime == "tensorrt" else "onnxruntime"
    return finalize(fp32, folder / f"{name}.onnx", cand, space, calib, runtime=quantizer)


def validate_latency(
    target: Target,
    space: SearchSpace,
    *,
    n: int = 100,
    precision: str = "mixed",
    seed: int = 0,
    reps: int = 50,
    passes: int = 3,
    channels: int = 1,
    classes: int = 10,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Validation:
    """Predict and measure ``n`` random candidates of ``space`` on ``target`` (a table measured
    on this machine), with the table's runtime and thread count."""
    dev = target.device
    check_measured_here(dev)
    if n < 3:
        raise BadInputError(f"-n must be at least 3 (a rank correlation needs them); got {n}")
    if dev.runtime == "tensorrt":  # before minutes of exporting: TensorRT and a GPU are here
        from autocompress.runtime_tensorrt import check_available

        check_available()
    if reps < 5 or passes < 1:
        raise BadInputError(f"--reps must be at least 5 and --passes at least 1; got {reps} and {passes}")
    threads = int(dev.host.get("threads") or 1)
    cpu = cpu_model()
    table_cpu = str(dev.host.get("cpu", "unknown"))
    if table_cpu != cpu:
        log.warning("table %s was measured on %r, this machine is %r", dev.name, table_cpu, cpu)
    cands = candidates(space, n, precision, list(dev.precisions), seed)
    report = Validation(
        target=dev.name, runtime=dev.runtime, runtime_version=dev.runtime_version, table_cpu=table_cpu,
        cpu=cpu, threads=threads, precision=precision, space=space.model.name, seed=seed, reps=reps, passes=passes,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip
    table = target.table
    pin = threads if dev.host.get("pinned_cpus") else 0  # time as the table was timed
    with tempfile.TemporaryDirectory() as tmp, pinned_cpus(pin):
        folder = Path(tmp)
        paths, shapes, preds = [], [], []
        for i, cand in enumerate(cands):  # build everything first: passes re-time the files
            blocks = plan(cand, space, channels, classes)
            preds.append((predict(table, blocks, block_precisions(cand, space, blocks)), blocks))
            paths.append(build_model(cand, space, channels, classes, folder, f"c{i}", dev.runtime))
            shapes.append((1, channels, cand.resolution, cand.resolution))
            if on_progress:
                on_progress("export", i + 1, len(cands))
        timings = measure_passes(
            paths, shapes, passes=passes, group=GROUP, threads=threads, reps=reps, runtime=dev.runtime, seed=seed,
            on_progress=(lambda d, t: on_progress("time", d, t)) if on_progress else None,
        )  # fmt: skip
        for cand, (pred, blocks), t in zip(cands, preds, timings):
            report.points.append(
                Point(
                    candidate=cand.describe(),
                    precisions="/".join(cand.precision),
                    macs=sum(b.macs() for b in blocks),
                    predicted_ms=pred.latency_ms,
                    measured_ms=t.p10_ms,
                    measured_median_ms=t.median_ms,
                    measured_p90_ms=t.p90_ms,
                    interpolated_blocks=pred.interpolated,
                    timed_passes=t.passes,
                    repeated=t.repeated,
                )
            )
    return report


def fit_block_scale(
    target: Target, space: SearchSpace, *, n: int = 24, seed: int = 1_000_003, reps: int = 50, passes: int = 3,
    channels: int = 1, classes: int = 10,
) -> tuple[dict[str, float], int, Int8Fit | None]:  # fmt: skip
    """Fit a measured table's ``block_scale`` per precision from ``n`` random networks per
    precision, timed end to end (the fit: :func:`autocompress.hardware.scale.fit_scales`).

    fp32 on all-fp32 networks, then each reduced precision on networks whose stages all run
    in it (their fp32 stem and head priced with the fp32 factor). Where the table has fitted
    int8 entry/exit costs, int8 is fitted with its link and region terms
    (:func:`autocompress.hardware.scale.fit_int8`) on the all-int8 networks and ``n`` mixed
    ones. The networks come from a seed far from validate-latency's default, so a validation
    never scores them.

    Returns:
        (factor per precision, networks timed, the int8 fit or None)
    """
    dev = target.device
    table = type(target.table)(device=unit_scale(dev, "blocks"), rows=target.table.rows, folder=target.folder)
    threads = int(dev.host.get("threads") or 1)
    groups: dict[str, list[Timed]] = {}
    modes = sorted(dev.precisions, key=lambda p: p != "fp32")
    if "int8" in modes and fused_int8(dev):
        modes.append("mixed")
    for prec in modes:
        cands = candidates(space, n, prec, list(dev.precisions), seed)
        with tempfile.TemporaryDirectory() as tmp:
            paths, shapes, preds = [], [], []
            for i, cand in enumerate(cands):
                blocks = plan(cand, space, channels, classes)
                bprec = block_precisions(cand, space, blocks)
                preds.append((predict(table, blocks, bprec), bprec, [BlockKey.of(b, q) for b, q in zip(blocks, bprec)]))
                paths.append(build_model(cand, space, channels, classes, Path(tmp), f"s{i}", dev.runtime))
                shapes.append((1, channels, cand.resolution, cand.resolution))
            timings = measure_passes(paths, shapes, passes=passes, group=GROUP, threads=threads, reps=reps,
                                     runtime=dev.runtime, seed=seed)  # fmt: skip
        groups[prec] = [Timed(pred, bprec, t.p10_ms, keys) for (pred, bprec, keys), t in zip(preds, timings)]
    mixed = groups.pop("mixed", [])
    scales = fit_scales(groups)
    int8 = fit_int8([*groups.get("int8", []), *mixed], scales) if mixed else None
    if int8 is not None:
        scales["int8"] = int8.scale
    return scales, sum(len(g) for g in groups.values()) + len(mixed), int8


MIN_BAND_CANDIDATES = 10  # a validation of fewer candidates is reported, but its band is not recorded


def record_band(report: Validation, target: Target, fit: HostFit | None) -> str:
    """Store the report's error band under its precision mode (fp32, int8, mixed) where the
    table's predictions on this machine are kept: the host fit (a table re-calibrated here), else
    the table's own ``device.yaml`` (measured here); returns one line saying where (or why not)."""
    if len(report.points) < MIN_BAND_CANDIDATES:
        return (f"error band not recorded: {len(report.points)} candidates are too few to stand for the table's "
                f"errors (at least {MIN_BAND_CANDIDATES}; -n 100 is the default)")  # fmt: skip
    band = report.band()
    if fit is not None:
        fit.error_band[report.precision] = band.model_dump()
        where = fit.save()
        return (f"error band {report.precision} recorded in {where}" if where
                else f"error band not recorded: {fit.path().parent} is not writable")  # fmt: skip
    path = target.folder / "device.yaml"
    if not (os.access(target.folder, os.W_OK) and os.access(path, os.W_OK)):
        return f"error band not recorded: {target.folder} is read-only (see {report.precision} in validation.json)"
    device = load_device(path)
    save_device(target.folder, device.model_copy(update={"error_band": {**device.error_band, report.precision: band}}))
    return f"error band {report.precision} recorded in {path}"


def write_validation(report: Validation, out: Path) -> dict[str, Path]:
    """Write ``validation.json``, ``validation.csv`` and ``validation.png`` into ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{**asdict(p), "error_pct": 100 * p.error} for p in report.points])
    paths = {"json": out / "validation.json", "csv": out / "validation.csv", "png": out / "validation.png"}
    payload = {
        "summary": report.summary(),
        "error_band": report.band().model_dump(),
        "host_fit": report.host_fit,
        "space": report.space,
        "seed": report.seed,
        "reps": report.reps,
        "passes": report.passes,
        "date": report.date,
        "tool": f"autocompress {__version__} validate-latency",
        "points": frame.to_dict(orient="records"),
    }
    atomic_write_text(paths["json"], json.dumps(payload, indent=2) + "\n")
    atomic_write_text(paths["csv"], frame.to_csv(index=False))
    plot_validation(report, paths["png"])
    return paths


def plot_validation(report: Validation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meas = np.array([p.measured_ms for p in report.points])
    pred = np.array([p.predicted_ms for p in report.points])
    mixes = [p.precisions for p in report.points]
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=120)
    lo, hi = 0.9 * min(meas.min(), pred.min()), 1.1 * max(meas.max(), pred.max())
    line = np.linspace(lo, hi, 50)
    ax.plot(line, line, color="black", lw=1, label="predicted = measured")
    ax.fill_between(line, line * (1 - TOLERANCE), line * (1 + TOLERANCE), color="tab:green", alpha=0.15,
                    label="±10%")  # fmt: skip
    n_int8 = np.array([m.count("int8") for m in mixes])
    if n_int8.min() == n_int8.max():  # one precision mix: one colour
        ax.scatter(meas, pred, s=18, color="tab:blue", edgecolors="none", label=report.precision)
    else:
        sc = ax.scatter(meas, pred, c=n_int8, cmap="viridis", s=18, edgecolors="none")
        fig.colorbar(sc, ax=ax, label="int8 stages", ticks=sorted(set(n_int8.tolist())))
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"measured on this machine (ms, {report.runtime} {report.runtime_version}, "
                  f"{report.threads} thread{'s' if report.threads != 1 else ''})")  # fmt: skip
    ax.set_ylabel(f"predicted from table {report.target} (ms)")
    ax.set_title(
        f"{len(report.points)} random candidates, {report.precision}: {100 * report.within:.0f}% within ±10%\n"
        f"MAPE {report.mape:.1f}%, Spearman {report.spearman:.3f}, median error {report.bias:+.1f}%",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
