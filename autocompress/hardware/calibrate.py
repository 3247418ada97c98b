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
    kernel_overhead_ms                       launch floor per (fused) kernel
    memory_efficiency                        fraction of the memory bandwidth reached
    overhead_ms                              per-inference overhead (device level)
    harness_overhead_ms.<harness>            per-inference overhead of one measuring harness
    harness_scale.<harness>                  factor on the kernel time of one harness's figures
                                             (a board measured at other clocks than device.yaml's)

Each published figure names its harness (Ultralytics' Python AutoBackend, torch2trt's Python
loop, ...; ``harness``): that harness's overhead is fitted as its own term and added to that
source's figures only, so that the per-kernel floor is fitted without the harness overhead of
the source; figures that time the GPU work alone (trtexec GPU compute, NetsPresso's model
computation) have no harness term. A figure whose harness replays the engine as a CUDA graph
(``cuda_graph: true``, MLPerf's LWIS harness) pays no per-kernel launch floor. Estimates add the device's ``overhead_ms``, never a
harness term, and use no harness scale. ``fit.priors`` pulls a free parameter toward a stated value (a weak log-space
penalty of weight ``fit.prior_weight``) where the figures barely constrain it.

Held-out errors: leave-one-out (each figure), leave-one-family-out (every figure of one network
family, ``families.family_of``) and leave-one-source-out (every figure of one source URL). A
harness term whose figures are all held out cannot be fitted: its figures are predicted with
its prior (``fit.priors``, stated before any fit) where it has one, else with ``overhead_ms``
(scale 1).
The leave-one-family-out errors fill ``device.yaml``'s ``error_band`` (per precision with at
least :data:`BAND_MIN_FIGURES` errors, and ``all``).

Fitted precisions are kept in order (int8 at least as fast as fp16, fp16 as fp32, in
achieved ops/s); a device precision without figures is given the fraction of its own peak
the nearest fitted precision reached (see :func:`_tie_precisions`).

Run ``autocompress calibrate TARGET [TARGET ...]`` (or ``--all``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from autocompress.arch import BlockSpec
from autocompress.exceptions import TargetError
from autocompress.hardware.families import family_of
from autocompress.hardware.interval import band_of, inside_count
from autocompress.hardware.lut import (
    CalibrationFigure,
    CalibrationFit,
    DeviceSpec,
    ErrorBand,
    Roofline,
    load_device,
    save_device,
)
from autocompress.hardware.reference_nets import LAYER_KINDS, reference_net
from autocompress.hardware.roofline import BYTES_PER_ELEM, write_estimated_table

PRECISION_ORDER = ("fp32", "fp16", "int8")
DEFAULT_CHANNELS = (1, 3)  # greyscale and RGB inputs: the stems of both are generated
_BOUNDS = {  # (low, high) of each parameter kind, in its natural unit
    "precision_efficiency": (1e-4, 1.0),
    "layer_efficiency": (0.005, 1.0),
    "kernel_overhead_ms": (1e-5, 10.0),
    "memory_efficiency": (0.05, 1.0),
    "overhead_ms": (0.0, 100.0),
    "harness_overhead_ms": (0.0, 20.0),
    "harness_scale": (0.2, 5.0),
}
_LINEAR = ("overhead_ms", "harness_overhead_ms")  # fitted in ms, not in log
BAND_MIN_FIGURES = 6  # held-out errors a precision needs for its own error band
WITHIN_PCT = 25
_STARTS = {  # deterministic multi-start grid (see _starts)
    "precision_efficiency": (0.2, 0.03, 0.6),
    "layer_efficiency": (0.3,),
    "kernel_overhead_ms": (0.01, 0.1, 1.0),
    "memory_efficiency": (0.5,),
    "overhead_ms": (0.2,),
    "harness_overhead_ms": (0.5,),
    "harness_scale": (1.0,),
}


@dataclass(frozen=True)
class _Figure:
    """A calibration figure with its reference network's layers as arrays."""

    figure: CalibrationFigure
    macs: np.ndarray
    elems: np.ndarray  # activation elements read and written
    weights: np.ndarray
    kinds: np.ndarray  # index into LAYER_KINDS
    launches: int  # kernels after fusion
    launch_mask: np.ndarray  # each layer's launches (0: fused into the kernel before it)
    family: str
    gemm_m: np.ndarray  # a convolution's GEMM rows (output pixels x batch), 0 for other kernels
    gemm_n: np.ndarray  # its GEMM columns (output channels per group)

    @property
    def layers(self) -> int:
        return len(self.macs)


def _prepare(figures: Iterable[CalibrationFigure]) -> list[_Figure]:
    out = []
    for fig in figures:
        try:
            net = reference_net(fig.network, fig.input_size, fig.classes)
        except KeyError as exc:
            raise TargetError(f"calibration figure: {exc.args[0]}") from None
        out.append(
            _Figure(
                fig,
                np.array([layer.macs for layer in net.layers], dtype=float) * fig.batch,
                np.array([layer.in_elems + layer.out_elems for layer in net.layers], dtype=float) * fig.batch,
                np.array([layer.weights for layer in net.layers], dtype=float),
                np.array([LAYER_KINDS.index(layer.kind) for layer in net.layers]),
                sum(layer.launches for layer in net.layers),
                np.array([layer.launches for layer in net.layers], dtype=float),
                family_of(net.layers),
                np.array([layer.gemm_m for layer in net.layers], dtype=float) * fig.batch,
                np.array([layer.gemm_n for layer in net.layers], dtype=float),
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
    harness: dict[str, float]
    scale: dict[str, float]
    floor_max: bool = False
    tile: tuple[int, int] | None = None

    @classmethod
    def of(cls, device: DeviceSpec) -> _Params:
        roof = _roof(device)
        return cls(dict(roof.peak_gops), dict(roof.precision_efficiency), dict(roof.layer_efficiency),
                   roof.kernel_overhead_ms, roof.memory_efficiency, roof.memory_bandwidth_gbs,
                   device.overhead_ms, dict(roof.harness_overhead_ms), dict(roof.harness_scale),
                   roof.floor_mode == "max", roof.gemm_tile)  # fmt: skip

    def get(self, name: str) -> float:
        group, _, key = name.partition(".")
        if group == "precision_efficiency":
            return self.prec_eff[key]
        if group == "layer_efficiency":
            return self.layer_eff.get(key, 1.0)
        if group == "harness_overhead_ms":
            return self.harness.get(key, self.overhead_ms)
        if group == "harness_scale":
            return self.scale.get(key, 1.0)
        return {"kernel_overhead_ms": self.kernel_ms, "memory_efficiency": self.mem_eff,
                "overhead_ms": self.overhead_ms}[name]  # fmt: skip

    def set(self, name: str, value: float) -> None:
        group, _, key = name.partition(".")
        if group == "precision_efficiency":
            self.prec_eff[key] = value
        elif group == "layer_efficiency":
            self.layer_eff[key] = value
        elif group == "harness_overhead_ms":
            self.harness[key] = value
        elif group == "harness_scale":
            self.scale[key] = value
        elif name == "kernel_overhead_ms":
            self.kernel_ms = value
        elif name == "memory_efficiency":
            self.mem_eff = value
        elif name == "overhead_ms":
            self.overhead_ms = value
        else:
            raise TargetError(f"unknown roofline parameter {name!r}")

    def overhead_of(self, figure: CalibrationFigure) -> float:
        """The per-inference overhead inside a published figure: its harness's term where it
        has one, else ``overhead_ms`` (a figure that includes it) or nothing."""
        if figure.harness in self.harness:
            return self.harness[figure.harness]
        return self.overhead_ms if figure.includes_overhead else 0.0

    def fill(self, fig: _Figure) -> np.ndarray | float:
        """Each layer's GEMM tile fill (``roofline.tile_fill``, vectorised)."""
        if self.tile is None:
            return 1.0
        tm, tn = self.tile
        gemm = fig.gemm_n > 0
        m, n = np.where(gemm, fig.gemm_m, 1.0), np.where(gemm, fig.gemm_n, 1.0)
        fill = m / (np.ceil(m / tm) * tm) * n / (np.ceil(n / tn) * tn)
        return np.where(gemm, fill, 1.0)

    def predict(self, fig: _Figure) -> float:
        """Roofline latency (ms) of a figure's network: the same formula as ``roofline.py``."""
        prec = fig.figure.precision
        kind_eff = np.array([self.layer_eff.get(k, 1.0) for k in LAYER_KINDS])[fig.kinds]
        gops = self.peak[prec] * self.prec_eff[prec] * kind_eff * self.fill(fig)
        compute = 2.0 * fig.macs / (gops * 1e9)
        memory = (fig.elems + fig.weights) * BYTES_PER_ELEM[prec] / (self.bandwidth * 1e9 * self.mem_eff)
        # a harness scale stands for other clocks: it stretches the work, not the launch floor
        work = np.maximum(compute, memory) * 1e3 * self.scale.get(fig.figure.harness, 1.0)
        # a CUDA-graph replay launches no kernel one by one: no launch floor (estimates keep it)
        kernel_ms = 0.0 if fig.figure.cuda_graph else self.kernel_ms
        if self.floor_max:
            total = float(np.maximum(work, fig.launch_mask * kernel_ms).sum())
        else:
            total = float(work.sum()) + fig.launches * kernel_ms
        return total + self.overhead_of(fig.figure)


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
        if group not in _BOUNDS or (group in ("precision_efficiency", "layer_efficiency", "harness_overhead_ms",
                                              "harness_scale") and not key):  # fmt: skip
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
    harnesses = {f.figure.harness for f in used if f.figure.harness}
    fit = _roof(device).fit
    all_priors = fit.priors if fit else {}
    for terms, group in ((params.harness, "harness_overhead_ms"), (params.scale, "harness_scale")):
        named = {n.split(".", 1)[1] for n in [*free, *all_priors] if n.startswith(group + ".")}
        for key in sorted(set(terms) | named):  # a harness without a figure here has no fitted term: its prior, else none
            if key not in harnesses:
                if f"{group}.{key}" in all_priors:
                    terms[key] = all_priors[f"{group}.{key}"]
                else:
                    terms.pop(key, None)
    # a precision efficiency (a harness term) without any figure cannot be fitted: tie it afterwards instead
    names = [n for n in free if not (n.startswith("precision_efficiency.") and n.split(".")[1] not in have)
             and not (n.startswith("harness_") and n.split(".", 1)[1] not in harnesses)]  # fmt: skip
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
            params.set(name, value if _linear(name) else math.exp(value))

    priors = {n: v for n, v in all_priors.items() if n in names and v > 0}
    weight = fit.prior_weight if fit else 0.0

    def residuals(x: np.ndarray) -> np.ndarray:
        unpack(x)
        errs = [math.log(params.predict(f)) - math.log(f.figure.latency_ms) for f in used]
        errs += [weight * (math.log(max(params.get(n), 1e-9)) - math.log(v)) for n, v in priors.items()]
        return np.array(errs)

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
        lo.append(a if _linear(name) else math.log(a))
        hi.append(b if _linear(name) else math.log(b))

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
                x.append(value if _linear(name) else math.log(value))  # type: ignore[arg-type]
            starts.append(np.array(x, dtype=float))
    return starts


def _linear(name: str) -> bool:
    return name.partition(".")[0] in _LINEAR


def _error_pct(pred: float, published: float) -> float:
    return 100.0 * (pred - published) / published


def _held_out(device: DeviceSpec, figs: Sequence[_Figure], free: Sequence[str],
              group: Callable[[int, _Figure], object]) -> list[float | None]:  # fmt: skip
    """Each figure's error (%) when the fit leaves out every figure of its group (None for
    figures not in the fit, and for all when there is a single group)."""
    in_fit = [i for i, f in enumerate(figs) if f.figure.use_in_fit]
    groups = {group(i, figs[i]) for i in in_fit}
    errors: list[float | None] = [None] * len(figs)
    if len(groups) < 2:
        return errors
    for g in groups:
        rest = [figs[i] for i in in_fit if group(i, figs[i]) != g]
        params = _fit(device, rest, free)
        for i in in_fit:
            if group(i, figs[i]) == g and figs[i].figure.precision in params.prec_eff:
                errors[i] = _error_pct(params.predict(figs[i]), figs[i].figure.latency_ms)
    return errors


def leave_one_out(device: DeviceSpec) -> list[float | None]:
    """Each figure's error (%) when the fit leaves it out (None for figures not in the fit)."""
    figs = _prepare(_roof(device).calibration)
    return _held_out(device, figs, _free_parameters(device, figs), lambda i, f: i)


def leave_one_family_out(device: DeviceSpec) -> list[float | None]:
    """Each figure's error (%) when the fit leaves out every figure of its network family
    (None when the calibration holds a single family)."""
    figs = _prepare(_roof(device).calibration)
    return _held_out(device, figs, _free_parameters(device, figs), lambda i, f: f.family)


def leave_one_source_out(device: DeviceSpec) -> list[float | None]:
    """Each figure's error (%) when the fit leaves out every figure of its source (URL)."""
    figs = _prepare(_roof(device).calibration)
    return _held_out(device, figs, _free_parameters(device, figs), lambda i, f: f.figure.source)


@dataclass(frozen=True)
class HeldOut:
    """Summary of held-out errors: how many, median |error| and the share within +-25%."""

    n: int
    median_abs_pct: float
    within: float

    @classmethod
    def of(cls, errors: Iterable[float | None]) -> HeldOut | None:
        vals = [abs(e) for e in errors if e is not None]
        if not vals:
            return None
        return cls(len(vals), float(np.median(vals)), sum(v <= WITHIN_PCT for v in vals) / len(vals))

    def text(self) -> str:
        return f"median |error| {self.median_abs_pct:.1f}%, {self.within:.0%} within +-{WITHIN_PCT}% (n={self.n})"


def error_bands(figures: Sequence[CalibrationFigure], errors: Sequence[float | None], basis: str) -> dict[str, ErrorBand]:
    """Error bands from held-out errors (prediction error %, as ``lofo_error_pct``): one per
    precision with at least :data:`BAND_MIN_FIGURES` errors, and ``all``."""
    pairs = [(f.precision, e) for f, e in zip(figures, errors) if e is not None]
    bands: dict[str, ErrorBand] = {}
    groups: dict[str, list[float]] = {"all": [e for _, e in pairs]}
    for prec in PRECISION_ORDER:
        errs = [e for p, e in pairs if p == prec]
        if len(errs) >= BAND_MIN_FIGURES:
            groups[prec] = errs
    for key, errs in groups.items():
        if not errs:
            continue
        # (actual / predicted - 1) % of each error as device.yaml records it (1 decimal), so that the
        # band holds the errors a reader finds there
        actual = [100.0 / (1 + round(e, 1) / 100) - 100.0 for e in errs]
        summary = HeldOut.of(errs)
        assert summary is not None
        bands[key] = band_of(actual, basis, digits=1, within={str(WITHIN_PCT): round(summary.within, 3)},
                             median_abs_pct=round(summary.median_abs_pct, 1))  # fmt: skip
    return bands


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
    loo = _held_out(device, figs, free, lambda i, f: i)
    lofo = _held_out(device, figs, free, lambda i, f: f.family)
    loso = _held_out(device, figs, free, lambda i, f: f.figure.source)
    fitted_precs = {f.figure.precision for f in used}
    figures = []
    for fig, err, fam_err, src_err in zip(figs, loo, lofo, loso):
        pred = params.predict(fig) if fig.figure.precision in params.prec_eff else None
        figures.append(fig.figure.model_copy(update={
            "family": fig.family,
            "predicted_ms": None if pred is None else _round(pred),
            "loo_error_pct": None if err is None else round(err, 1),
            "lofo_error_pct": None if fam_err is None else round(fam_err, 1),
            "loso_error_pct": None if src_err is None else round(src_err, 1),
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
    families = sorted({f.family for f in used})
    sources = sorted({f.figure.source for f in used})
    held: dict[str, str] = {}
    for label, errs, groups in (("leave_one_family_out", lofo, families), ("leave_one_source_out", loso, sources)):
        summary = HeldOut.of(errs)
        kind = "families" if label.endswith("family_out") else "sources"
        held[label] = (f"{summary.text()} over {len(groups)} {kind}" if summary
                       else f"not computable: a single {kind[:-1].replace('ie', 'y')} in the calibration")  # fmt: skip
    if any(e is not None for e in lofo):
        band_errs, basis = lofo, f"leave-one-family-out over the published figures (families: {', '.join(families)})"
    else:
        band_errs = loo
        basis = (f"leave-one-figure-out within the only calibrated family ({', '.join(families)}): "
                 "other families are not covered and may be off by more")  # fmt: skip
    fit = prior.model_copy(update={
        "figures": len(used), "free": list(free), "fixed": fixed,
        "rms_error_pct": round(rms, 1), "loo_rms_error_pct": None if loo_rms is None else round(loo_rms, 1),
        "held_out": held,
    })  # fmt: skip
    new_roof = roof.model_copy(update={
        "precision_efficiency": {p: _round(params.prec_eff[p]) for p in device.precisions if p in params.prec_eff},
        "layer_efficiency": {k: _round(v) for k, v in params.layer_eff.items()},
        "kernel_overhead_ms": _round(params.kernel_ms),
        "memory_efficiency": _round(params.mem_eff),
        "harness_overhead_ms": {k: _round(v) for k, v in sorted(params.harness.items())},
        "harness_scale": {k: _round(v) for k, v in sorted(params.scale.items())},
        "calibrated": True,
        "calibration": figures,
        "fit": fit,
    })  # fmt: skip
    return device.model_copy(update={"roofline": new_roof, "overhead_ms": _round(params.overhead_ms),
                                     "error_band": error_bands(figures, band_errs, basis)})  # fmt: skip


def _all_parameters(device: DeviceSpec) -> list[str]:
    roof = _roof(device)
    return ([f"precision_efficiency.{p}" for p in device.precisions]
            + [f"layer_efficiency.{k}" for k in roof.layer_efficiency]
            + ["kernel_overhead_ms", "memory_efficiency", "overhead_ms"]
            + [f"harness_overhead_ms.{h}" for h in roof.harness_overhead_ms]
            + [f"harness_scale.{h}" for h in roof.harness_scale])  # fmt: skip


def _round(x: float, digits: int = 5) -> float:
    """``x`` to ``digits`` significant digits (readable YAML; far below the model's error)."""
    return float(f"{x:.{digits}g}") if x else 0.0


def shipped_spaces() -> list[str]:
    """The names of every shipped search space (each YAML file of the spaces folder)."""
    from autocompress._resources import spaces_dir

    return sorted(p.stem for p in spaces_dir().glob("*.yaml"))


def default_blocks(
    spaces: Iterable[str] | None = None, channels: Iterable[int] = DEFAULT_CHANNELS, classes: int = 10
) -> list[BlockSpec]:
    """Every block of ``spaces`` (default: every shipped space) for greyscale and RGB inputs."""
    from autocompress.arch import all_blocks
    from autocompress.space import load_space

    blocks: set[BlockSpec] = set()
    for name in shipped_spaces() if spaces is None else spaces:
        space = load_space(name)
        for ch in channels:
            blocks |= all_blocks(space, ch, classes)
    return sorted(blocks, key=repr)


def write_device(folder: Path, device: DeviceSpec) -> None:
    """Write ``folder/device.yaml`` (atomically, keys in model order)."""
    save_device(folder, device)


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
    refresh_layer_rows(folder, device)
    return device


def refresh_layer_rows(folder: Path, device: DeviceSpec) -> int:
    """Re-estimate every row of ``folder/layers.csv`` with ``device``'s roofline (the layers
    already there: those of the models profiled with ``profile --layers``); returns how many."""
    from autocompress.hardware.layer_estimate import estimate_layer_rows
    from autocompress.hardware.layer_table import load_layers, save_layers

    keys = list(load_layers(folder, device).rows)
    if keys:
        save_layers(folder, estimate_layer_rows(device, keys))
    return len(keys)


def summary(device: DeviceSpec) -> str:
    """A plain-text table of a device's calibration (for the CLI and the benchmarks README):
    each figure with its family, source harness, prediction and held-out errors, the held-out
    summaries, and the families its estimates do not cover."""
    from autocompress.hardware.families import FAMILIES, covered_families

    roof = _roof(device)
    lines = [f"{device.name}: " + ("calibrated" if roof.calibrated else "uncalibrated") + " (ESTIMATED target)"]
    if roof.precision_efficiency:
        effs = ", ".join(f"{p} {v:.3g}" for p, v in roof.precision_efficiency.items())
        lines.append(f"  precision efficiency: {effs}; dwconv {roof.layer_efficiency.get('dwconv', 1.0):.3g}; "
                     f"kernel floor {roof.kernel_overhead_ms:.4g} ms; overhead {device.overhead_ms:.4g} ms")  # fmt: skip
    if roof.harness_overhead_ms:
        terms = ", ".join(f"{k} {v:.3g} ms" for k, v in roof.harness_overhead_ms.items())
        lines.append(f"  harness overhead in the published figures (fitted, not added to estimates): {terms}")
    if roof.harness_scale:
        terms = ", ".join(f"{k} x{v:.3g}" for k, v in roof.harness_scale.items())
        lines.append(f"  harness kernel-time factor (other clocks; fitted, not applied to estimates): {terms}")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:+.1f}%"

    lines.append(f"  {'network':18s} {'size':>4s} {'prec':5s} {'family':9s} {'published':>9s} {'model':>7s} "
                 f"{'LOO':>7s} {'LOFO':>7s} {'LOSO':>7s}  harness")  # fmt: skip
    for f in roof.calibration:
        pred = "-" if f.predicted_ms is None else f"{f.predicted_ms:.3g}"
        lines.append(f"  {f.network:18s} {f.input_size:4d} {f.precision:5s} {f.family or '-':9s} "
                     f"{f.latency_ms:9.3g} {pred:>7s} {pct(f.loo_error_pct):>7s} {pct(f.lofo_error_pct):>7s} "
                     f"{pct(f.loso_error_pct):>7s}  {f.harness or ('-' if not f.includes_overhead else 'overhead_ms')}")  # fmt: skip
    if roof.fit and roof.fit.rms_error_pct is not None:
        lines.append(f"  rms error {roof.fit.rms_error_pct}%, leave-one-out rms {roof.fit.loo_rms_error_pct}%")
        for label, text in roof.fit.held_out.items():
            lines.append(f"  {label.replace('_', '-')}: {text}")
    for key, band in device.error_band.items():
        lines.append(f"  error band {key}: actual = predicted x (1 {band.lo_pct:+.1f}% .. {band.hi_pct:+.1f}%) for "
                     f"{inside_count(band)} of {band.n} held-out figures ({band.basis})")  # fmt: skip
    covered = covered_families(device)
    missing = [f for f in FAMILIES if f not in covered]
    if roof.calibrated and missing:
        lines.append(f"  NOT COVERED: no published figure of family {', '.join(missing)}; estimates for such "
                     "networks extrapolate from other families")  # fmt: skip
    return "\n".join(lines)
