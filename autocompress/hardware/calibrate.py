"""Calibrate an estimated target's roofline against published whole-network latencies.

``device.yaml`` lists the published figures (``roofline.calibration``: network, input size,
precision, latency, source) and which roofline parameters to fit (``roofline.fit.free``). The
fit minimises the squared error of log latency (``scipy.optimize.least_squares``) over the
free parameters, the others keep their ``device.yaml`` values (each with its reason in
``roofline.fit.assumptions``). It then writes back every fitted value, each figure's
prediction and leave-one-out error, and regenerates ``blocks.csv``.

Free parameters (names as in ``device.yaml``)::

    precision_efficiency.<fp32|fp16|int8>   fraction of the precision's peak a dense conv reaches
    layer_efficiency.<kind>                  throughput of a layer kind relative to dense conv
    kernel_overhead_ms                       launch floor per kernel
    memory_efficiency                        fraction of the memory bandwidth reached
    overhead_ms                              per-inference overhead (device level)

Fitted precisions are kept in order (int8 at least as fast as fp16, fp16 as fp32, in
achieved ops/s); a device precision without figures is given the fraction of its own peak
the nearest fitted precision reached (see :func:`_tie_precisions`).

Run ``autocompress calibrate TARGET [TARGET ...]`` (or ``--all``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares

from autocompress._io import atomic_write_text
from autocompress.arch import BlockSpec
from autocompress.exceptions import TargetError
from autocompress.hardware.lut import CalibrationFigure, CalibrationFit, DeviceSpec, Roofline, load_device
from autocompress.hardware.reference_nets import LAYER_KINDS, reference_net
from autocompress.hardware.roofline import BYTES_PER_ELEM, write_estimated_table

PRECISION_ORDER = ("fp32", "fp16", "int8")
DEFAULT_SPACES = ("fashion_mnist", "tiny", "mobilenet_rgb")
_BOUNDS = {  # (low, high) of each parameter kind, in its natural unit
    "precision_efficiency": (1e-4, 1.0),
    "layer_efficiency": (0.005, 1.0),
    "kernel_overhead_ms": (1e-5, 10.0),
    "memory_efficiency": (0.05, 1.0),
    "overhead_ms": (0.0, 100.0),
}
_STARTS = {  # deterministic multi-start grid (see _starts)
    "precision_efficiency": (0.2, 0.03, 0.6),
    "layer_efficiency": (0.3,),
    "kernel_overhead_ms": (0.01, 0.1, 1.0),
    "memory_efficiency": (0.5,),
    "overhead_ms": (0.2,),
}


@dataclass(frozen=True)
class _Figure:
    """A calibration figure with its reference network's layers as arrays."""

    figure: CalibrationFigure
    macs: np.ndarray
    elems: np.ndarray
    kinds: np.ndarray  # index into LAYER_KINDS

    @property
    def layers(self) -> int:
        return len(self.macs)


def _prepare(figures: Iterable[CalibrationFigure]) -> list[_Figure]:
    out = []
    for fig in figures:
        try:
            net = reference_net(fig.network, fig.input_size)
        except KeyError as exc:
            raise TargetError(f"calibration figure: {exc.args[0]}") from None
        out.append(
            _Figure(
                fig,
                np.array([layer.macs for layer in net.layers], dtype=float) * fig.batch,
                np.array([layer.in_elems + layer.out_elems for layer in net.layers], dtype=float) * fig.batch
                + np.array([layer.weights for layer in net.layers], dtype=float),
                np.array([LAYER_KINDS.index(layer.kind) for layer in net.layers]),
            )
        )
    return out


@dataclass
class _Params:
    """The roofline parameters the model needs, as plain numbers."""

    peak: dict[str, float]
    prec_eff: dict[str, float]
    layer_eff: dict[str, float]
    kernel_ms: float
    mem_eff: float
    bandwidth: float
    overhead_ms: float

    @classmethod
    def of(cls, device: DeviceSpec) -> _Params:
        roof = _roof(device)
        return cls(dict(roof.peak_gops), dict(roof.precision_efficiency), dict(roof.layer_efficiency),
                   roof.kernel_overhead_ms, roof.memory_efficiency, roof.memory_bandwidth_gbs,
                   device.overhead_ms)  # fmt: skip

    def get(self, name: str) -> float:
        group, _, key = name.partition(".")
        if group == "precision_efficiency":
            return self.prec_eff[key]
        if group == "layer_efficiency":
            return self.layer_eff.get(key, 1.0)
        return {"kernel_overhead_ms": self.kernel_ms, "memory_efficiency": self.mem_eff,
                "overhead_ms": self.overhead_ms}[name]  # fmt: skip

    def set(self, name: str, value: float) -> None:
        group, _, key = name.partition(".")
        if group == "precision_efficiency":
            self.prec_eff[key] = value
        elif group == "layer_efficiency":
            self.layer_eff[key] = value
        elif name == "kernel_overhead_ms":
            self.kernel_ms = value
        elif name == "memory_efficiency":
            self.mem_eff = value
        elif name == "overhead_ms":
            self.overhead_ms = value
        else:
            raise TargetError(f"unknown roofline parameter {name!r}")

    def predict(self, fig: _Figure) -> float:
        """Roofline latency (ms) of a figure's network: the same formula as ``roofline.py``."""
        prec = fig.figure.precision
        kind_eff = np.array([self.layer_eff.get(k, 1.0) for k in LAYER_KINDS])[fig.kinds]
        gops = self.peak[prec] * self.prec_eff[prec] * kind_eff
        compute = 2.0 * fig.macs / (gops * 1e9)
        memory = fig.elems * BYTES_PER_ELEM[prec] / (self.bandwidth * 1e9 * self.mem_eff)
        total = float(np.maximum(compute, memory).sum()) * 1e3 + fig.layers * self.kernel_ms
        return total + (self.overhead_ms if fig.figure.includes_overhead else 0.0)


def _roof(device: DeviceSpec) -> Roofline:
    if device.roofline is None:
        raise TargetError(f"target {device.name} has no roofline section to calibrate")
    return device.roofline


def _free_parameters(device: DeviceSpec, figs: Sequence[_Figure]) -> list[str]:
    """The parameters to fit: ``fit.free`` as written, else every figured precision's
    efficiency and the kernel overhead."""
    roof = _roof(device)
    if roof.fit is not None and roof.fit.free:
        free = list(roof.fit.free)
    else:
        precs = sorted({f.figure.precision for f in figs}, key=PRECISION_ORDER.index)
        free = [f"precision_efficiency.{p}" for p in precs] + ["kernel_overhead_ms"]
    for name in free:
        group, _, key = name.partition(".")
        if group not in _BOUNDS or (group in ("precision_efficiency", "layer_efficiency") and not key):
            raise TargetError(f"{device.name}: roofline.fit.free names an unknown parameter {name!r}")
        if group == "layer_efficiency" and key not in LAYER_KINDS:
            raise TargetError(f"{device.name}: roofline.fit.free: {key!r} is not a layer kind {LAYER_KINDS}")
    return free


def _tie_precisions(params: _Params, device: DeviceSpec, fitted: set[str], figured: set[str]) -> None:
    """Give each device precision without a figure the fraction of its own peak that the
    nearest fitted precision reached (the next wider one first: int8 takes fp16's, fp16 takes
    fp32's; else the next narrower one)."""
    for prec in device.precisions:
        if prec in figured or not fitted:
            continue
        i = PRECISION_ORDER.index(prec)
        ref = min(fitted, key=lambda p: (abs(PRECISION_ORDER.index(p) - i), PRECISION_ORDER.index(p) > i))
        params.prec_eff[prec] = params.prec_eff[ref]


def _fit(device: DeviceSpec, figs: Sequence[_Figure], free: Sequence[str]) -> _Params:
    """Least squares on log latency over ``free``; deterministic multi-start."""
    params = _Params.of(device)
    used = [f for f in figs if f.figure.use_in_fit]
    have = {f.figure.precision for f in used}
    # a precision efficiency without any figure cannot be fitted: tie it afterwards instead
    names = [n for n in free if not (n.startswith("precision_efficiency.") and n.split(".")[1] not in have)]
    precs = sorted(
        (n.split(".")[1] for n in names if n.startswith("precision_efficiency.")), key=PRECISION_ORDER.index
    )
    others = [n for n in names if not n.startswith("precision_efficiency.")]
    if not used or not names:
        return params

    def unpack(x: np.ndarray) -> None:
        # achieved throughput: log of the widest precision's, then non-negative log steps
        log_t = x[0]
        for j, prec in enumerate(precs):
            if j:
                log_t += x[j]
            params.prec_eff[prec] = math.exp(log_t) / params.peak[prec]
        for j, name in enumerate(others):
            value = x[len(precs) + j]
            params.set(name, value if name == "overhead_ms" else math.exp(value))

    def residuals(x: np.ndarray) -> np.ndarray:
        unpack(x)
        return np.array([math.log(params.predict(f)) - math.log(f.figure.latency_ms) for f in used])

    lo, hi = [], []
    for j, prec in enumerate(precs):
        if j == 0:
            lo.append(math.log(_BOUNDS["precision_efficiency"][0] * params.peak[prec]))
            hi.append(math.log(_BOUNDS["precision_efficiency"][1] * params.peak[prec]))
        else:  # never slower than the wider precision, never faster than its own peak allows
            lo.append(0.0)
            hi.append(
                math.log(params.peak[prec] / (_BOUNDS["precision_efficiency"][0] * params.peak[precs[0]]))
            )
    for name in others:
        a, b = _BOUNDS[name.partition(".")[0]]
        lo.append(a if name == "overhead_ms" else math.log(a))
        hi.append(b if name == "overhead_ms" else math.log(b))

    best: tuple[float, np.ndarray] | None = None
    for start in _starts(precs, others, params):
        x0 = np.clip(start, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
        res = least_squares(residuals, x0, bounds=(lo, hi), method="trf", x_scale=1.0, max_nfev=2000)
        if best is None or res.cost < best[0] - 1e-12:
            best = (float(res.cost), res.x)
    assert best is not None
    unpack(best[1])
    _tie_precisions(params, device, set(precs), have)
    return params


def _starts(precs: Sequence[str], others: Sequence[str], params: _Params) -> list[np.ndarray]:
    """A small deterministic grid of starting points: every listed efficiency x every listed
    kernel overhead (when those are free); the other free parameters start at their first value."""
    effs = _STARTS["precision_efficiency"] if precs else (None,)
    kernels = _STARTS["kernel_overhead_ms"] if "kernel_overhead_ms" in others else (None,)
    starts = []
    for eff in effs:
        for kernel in kernels:
            x = [math.log(eff * params.peak[precs[0]])] + [0.3] * (len(precs) - 1) if eff is not None else []
            for name in others:
                group = name.partition(".")[0]
                value = kernel if group == "kernel_overhead_ms" else _STARTS[group][0]
                x.append(value if name == "overhead_ms" else math.log(value))  # type: ignore[arg-type]
            starts.append(np.array(x, dtype=float))
    return starts


def _error_pct(pred: float, published: float) -> float:
    return 100.0 * (pred - published) / published


def leave_one_out(device: DeviceSpec) -> list[float | None]:
    """Each figure's error (%) when the fit leaves it out (None for figures not in the fit)."""
    roof = _roof(device)
    figs = _prepare(roof.calibration)
    free = _free_parameters(device, figs)
    errors: list[float | None] = []
    for i, fig in enumerate(figs):
        if not fig.figure.use_in_fit:
            errors.append(None)
            continue
        rest = [f for j, f in enumerate(figs) if j != i and f.figure.use_in_fit]
        params = _fit(device, rest, free)
        if fig.figure.precision not in params.prec_eff:
            errors.append(None)
            continue
        errors.append(_error_pct(params.predict(fig), fig.figure.latency_ms))
    return errors


def calibrate_device(device: DeviceSpec) -> DeviceSpec:
    """Fit ``device``'s free roofline parameters to its calibration figures; return the device
    with the fitted values, each figure's prediction and leave-one-out error, and the fit
    summary. A device without usable figures comes back ``calibrated: false``, unchanged."""
    roof = _roof(device)
    figs = _prepare(roof.calibration)
    used = [f for f in figs if f.figure.use_in_fit]
    prior = roof.fit or CalibrationFit(figures=0)
    if not used:
        new_roof = roof.model_copy(
            update={"calibrated": False, "fit": prior.model_copy(update={"figures": 0})}
        )
        return device.model_copy(update={"roofline": new_roof})
    free = _free_parameters(device, figs)
    params = _fit(device, figs, free)
    loo = leave_one_out(device)
    fitted_precs = {f.figure.precision for f in used}
    figures = []
    for fig, err in zip(figs, loo):
        pred = params.predict(fig) if fig.figure.precision in params.prec_eff else None
        figures.append(fig.figure.model_copy(update={
            "predicted_ms": None if pred is None else _round(pred),
            "loo_error_pct": None if err is None else round(err, 1),
        }))  # fmt: skip
    in_fit = [f for f in figures if f.use_in_fit and f.predicted_ms is not None]
    rms = math.sqrt(sum(_error_pct(f.predicted_ms, f.latency_ms) ** 2 for f in in_fit) / len(in_fit))  # type: ignore[arg-type]
    loo_vals = [e for e in loo if e is not None]
    loo_rms = math.sqrt(sum(e * e for e in loo_vals) / len(loo_vals)) if loo_vals else None
    free_used = [
        n for n in free if not (n.startswith("precision_efficiency.") and n.split(".")[1] not in fitted_precs)
    ]
    fixed = []
    for name in _all_parameters(device):
        if name in free_used:
            continue
        prec = name.split(".")[1] if name.startswith("precision_efficiency.") else None
        why = f" (tied: no {prec} figure)" if prec is not None and prec not in fitted_precs else ""
        fixed.append(f"{name} = {params.get(name):.4g}{why}")
    fit = prior.model_copy(update={
        "figures": len(used), "free": list(free), "fixed": fixed,
        "rms_error_pct": round(rms, 1), "loo_rms_error_pct": None if loo_rms is None else round(loo_rms, 1),
    })  # fmt: skip
    new_roof = roof.model_copy(update={
        "precision_efficiency": {p: _round(params.prec_eff[p]) for p in device.precisions if p in params.prec_eff},
        "layer_efficiency": {k: _round(v) for k, v in params.layer_eff.items()},
        "kernel_overhead_ms": _round(params.kernel_ms),
        "memory_efficiency": _round(params.mem_eff),
        "calibrated": True,
        "calibration": figures,
        "fit": fit,
    })  # fmt: skip
    return device.model_copy(update={"roofline": new_roof, "overhead_ms": _round(params.overhead_ms)})


def _all_parameters(device: DeviceSpec) -> list[str]:
    roof = _roof(device)
    return ([f"precision_efficiency.{p}" for p in device.precisions]
            + [f"layer_efficiency.{k}" for k in roof.layer_efficiency]
            + ["kernel_overhead_ms", "memory_efficiency", "overhead_ms"])  # fmt: skip


def _round(x: float, digits: int = 5) -> float:
    """``x`` to ``digits`` significant digits (readable YAML; far below the model's error)."""
    return float(f"{x:.{digits}g}") if x else 0.0


def default_blocks(
    spaces: Iterable[str] = DEFAULT_SPACES, channels: int | None = None, classes: int = 10
) -> list[BlockSpec]:
    """Every block of the shipped spaces, as ``autocompress estimate-table`` covers them; each
    space with its own input channels (``input.channels``: 1 grey, 3 RGB) unless ``channels``
    is given."""
    from autocompress.arch import all_blocks
    from autocompress.space import load_space

    blocks: set[BlockSpec] = set()
    for name in spaces:
        space = load_space(name)
        blocks |= all_blocks(space, channels or space.model.input.channels, classes)
    return sorted(blocks, key=repr)


def write_device(folder: Path, device: DeviceSpec) -> None:
    """Write ``folder/device.yaml`` (atomically, keys in model order)."""
    data = device.model_dump(mode="json", exclude_none=True)
    atomic_write_text(
        folder / "device.yaml", yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)
    )


def calibrate_target(folder: Path, blocks: Iterable[BlockSpec] | None = None) -> DeviceSpec:
    """Recalibrate the estimated target in ``folder``: rewrite ``device.yaml``'s roofline
    parameters and calibration section, then regenerate ``blocks.csv`` (for ``blocks``, by
    default every block of the shipped spaces).

    Raises:
        TargetError: not an estimated target, no roofline, or a figure names an unknown network.
    """
    folder = Path(folder)
    device = load_device(folder / "device.yaml")
    if device.source != "estimated":
        raise TargetError(f"{folder} is a {device.source} table; only estimated tables are calibrated")
    device = calibrate_device(device)
    write_device(folder, device)
    write_estimated_table(folder, default_blocks() if blocks is None else blocks)
    return device


def summary(device: DeviceSpec) -> str:
    """A plain-text table of a device's calibration (for the CLI and the benchmarks README)."""
    roof = _roof(device)
    lines = [f"{device.name}: " + ("calibrated" if roof.calibrated else "uncalibrated")]
    if roof.precision_efficiency:
        effs = ", ".join(f"{p} {v:.3g}" for p, v in roof.precision_efficiency.items())
        lines.append(f"  precision efficiency: {effs}; kernel overhead {roof.kernel_overhead_ms:.4g} ms; "
                     f"overhead {device.overhead_ms:.4g} ms")  # fmt: skip
    for f in roof.calibration:
        pred = "-" if f.predicted_ms is None else f"{f.predicted_ms:.3g}"
        loo = "-" if f.loo_error_pct is None else f"{f.loo_error_pct:+.1f}%"
        lines.append(f"  {f.network:14s} {f.input_size:4d} {f.precision:5s} published {f.latency_ms:8.3g} ms  "
                     f"model {pred:>7s} ms  LOO {loo:>7s}")  # fmt: skip
    if roof.fit and roof.fit.rms_error_pct is not None:
        lines.append(
            f"  rms error {roof.fit.rms_error_pct}%, leave-one-out rms {roof.fit.loo_rms_error_pct}%"
        )
    return "\n".join(lines)
