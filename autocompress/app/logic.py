"""What the explorer shows, as plain functions over a run directory (no Streamlit here).

A run may be read while a search is still writing it: every file of a run is replaced
atomically, and :func:`load_view` turns a missing, empty, partial or corrupt run into a message
instead of an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from autocompress.budget import budget_message
from autocompress.exceptions import AutoCompressError
from autocompress.results import (
    CONFIG_FILE,
    STUDY_FILE,
    accuracy_runtime_name,
    accuracy_window,
    far_below_line,
    load_trials,
    mark_fronts,
    read_config,
)
from autocompress.units import format_bytes, format_ms

TRIALS_FILE = "trials.parquet"
X_AXES = {"latency": "latency_ms", "size": "size_kb", "energy": "energy_mj"}
Y_AXES = {"validation": "val_acc_pct", "test": "test_acc_pct"}


@dataclass
class RunView:
    """A run as the explorer sees it. ``problem`` is set (and ``level`` says how bad) when there
    is nothing, or not everything, to show."""

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    problem: str | None = None
    level: str = "info"  # info: wait for the search; error: this is not (or no longer) a run

    @property
    def ok(self) -> bool:
        return self.problem is None


def list_runs(runs_dir: str | Path) -> list[Path]:
    """Run directories under ``runs_dir`` (anything with a config, a study or trials), newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir()
        if p.is_dir() and any((p / f).exists() for f in (CONFIG_FILE, STUDY_FILE, TRIALS_FILE))
    ]  # fmt: skip
    return sorted(found, key=lambda p: max((p / f).stat().st_mtime for f in (CONFIG_FILE, STUDY_FILE, TRIALS_FILE)
                                            if (p / f).exists()), reverse=True)  # fmt: skip


def data_stamp(run_dir: str | Path) -> tuple[float, ...]:
    """Modification times of the files the explorer reads: changes when a search writes."""
    run_dir = Path(run_dir)
    out = []
    for name in (CONFIG_FILE, TRIALS_FILE):
        try:
            out.append((run_dir / name).stat().st_mtime)
        except OSError:
            out.append(0.0)
    return tuple(out)


def load_view(run_dir: str | Path) -> RunView:
    """Read a run for display; never raises for a missing, partial or corrupt run."""
    run_dir = Path(run_dir)
    view = RunView(run_dir)
    if not run_dir.is_dir():
        return _problem(view, f"{run_dir} does not exist.", "error")
    if not (run_dir / CONFIG_FILE).exists():
        if not any(run_dir.iterdir()):
            return _problem(view, f"{run_dir} is empty: no search has written to it yet.", "error")
        return _problem(view, f"{run_dir} is not an autocompress run (no {CONFIG_FILE}).", "error")
    try:
        view.config = read_config(run_dir)
    except AutoCompressError as exc:
        return _problem(view, f"Cannot read this run: {exc}.", "error")
    if not (run_dir / TRIALS_FILE).exists():
        return _problem(view, "The search has started but no trial has finished yet; this page refreshes "
                              "as trials complete.")  # fmt: skip
    try:
        trials = load_trials(run_dir)
    except AutoCompressError as exc:
        return _problem(view, f"Cannot read this run's trials: {exc}.", "error")
    missing = [c for c in ("number", "state", "latency_ms", "val_accuracy") if c not in trials]
    if missing:
        return _problem(view, f"{run_dir / TRIALS_FILE} is not a trials table (missing {', '.join(missing)}).",
                        "error")  # fmt: skip
    view.trials = trials
    states = trials["state"]
    failed = trials[states == "FAIL"]
    if (states == "COMPLETE").sum() == 0 and len(failed) and not (states == "RUNNING").any():
        last = failed.iloc[-1]
        why = last.get("error")
        why = f" (trial {int(last['number'])}: {why})" if isinstance(why, str) and why else ""
        return _problem(view, f"No trial has completed: {len(failed)} of {len(trials)} failed{why}; this page "
                              "refreshes if the search goes on and a trial completes.", "error")  # fmt: skip
    if (states == "COMPLETE").sum() == 0:
        return _problem(view, f"No trial has completed yet ({len(trials)} started); this page refreshes as "
                              "trials complete.")  # fmt: skip
    return view


def _problem(view: RunView, message: str, level: str = "info") -> RunView:
    view.problem, view.level = message, level
    return view


def summary(config: dict[str, Any], trials: pd.DataFrame) -> dict[str, Any]:
    """Target, budget, sampler, progress and where the latency figures come from."""
    states = trials["state"].value_counts().to_dict() if not trials.empty else {}
    done = int(states.get("COMPLETE", 0))
    estimated = bool(config.get("target_estimated"))
    window = accuracy_window(config)
    flagged = _with_fronts(trials, window)
    return {
        "target": config.get("target"),
        "budget_ms": config.get("budget_ms"),
        "budget": format_ms(float(config["budget_ms"])) if config.get("budget_ms") else "none",
        "sampler": config.get("sampler"),
        "space": (config.get("space") or {}).get("name"),
        "dataset": (config.get("dataset") or {}).get("name"),
        "trials_done": done,
        "trials_requested": config.get("trials"),
        "trials_failed": int(states.get("FAIL", 0)),
        "trials_running": int(states.get("RUNNING", 0)),
        "feasible": int(trials["feasible"].fillna(False).astype(bool).sum()) if "feasible" in trials else 0,
        "pareto": int(trials["pareto"].fillna(False).astype(bool).sum()) if "pareto" in trials else 0,
        "front": int(flagged["front"].sum()),
        "far_below": int(flagged["far_below"].sum()),
        "far_below_note": far_below_line(flagged[flagged["pareto"]], window),
        "latency_source": "estimated" if estimated else "measured",
        "latency_label": config.get("target_label") or "",
        "estimated": estimated,
        "finalize_note": finalize_note(config, trials),
    }


def finalize_note(config: dict[str, Any], trials: pd.DataFrame) -> str | None:
    """One line on the finalize phase (None when the run was not finalized)."""
    if "final_state" not in trials or not trials["final_state"].notna().any():
        return None
    states = trials["final_state"].value_counts().to_dict()
    fin = config.get("finalize") or {}
    running = int(states.get("running", 0))  # in training now, or left so by an interrupted finalize
    lead = "finalize after the search is running (or was interrupted)" if running else "finalized after the search"
    return (f"{lead} ({fin.get('schedule_text', 'long distillation fine-tune')}): "
            f"{states.get('finalized', 0)} deployed better on validation, {states.get('kept', 0)} kept the "
            f"search's model" + (f", {running} not finished (`autocompress finalize RUN` resumes an interrupted "
                                 "one)" if running else "")
            + "; accuracies shown are the deployed models' ('val acc % (search)' beside them)")  # fmt: skip


def budget_note(config: dict[str, Any]) -> str | None:
    """One line when the run's budget excludes no candidate of its space (config.yaml's
    ``latency_range``), with the range and a budget that would bind, or when it is below the
    fastest candidate (no trial can meet it); None otherwise."""
    if not config.get("budget_ms"):
        return None
    return budget_message(float(config["budget_ms"]), config.get("latency_range"), str(config.get("target")),
                          budget_on=config.get("budget_on", "point"), band=config.get("latency_error_band"))  # fmt: skip


def _is_precision(col: str) -> bool:
    """A precision choice: ``s0_precision`` (supernet stages) or ``precision.layer1`` (user models)."""
    return col.startswith("precision.") or (col.endswith("_precision") and col[:1] == "s")


def _is_prune(col: str) -> bool:
    return col.startswith("prune.") or (col.endswith("_prune") and col[:1] == "s")


def _with_fronts(trials: pd.DataFrame, window_pp: float) -> pd.DataFrame:
    """The trials with ``front`` and ``far_below`` for the run's accuracy window (computed again:
    a table written before they existed has neither), every flag a plain bool."""
    df = mark_fronts(trials, window_pp) if "pareto" in trials else trials.copy()
    for col in ("feasible", "pareto", "front", "far_below"):
        df[col] = df[col].fillna(False).astype(bool) if col in df else False
    return df


def candidate_status(pareto: bool, front: bool, feasible: bool) -> str:
    """How a candidate stands: on the accuracy–latency front, elsewhere on the Pareto set (smaller
    but not faster, or far below the best), dominated, or over the budget."""
    if front:
        return "front"
    return "Pareto" if pareto else ("dominated" if feasible else "over budget")


def candidates(trials: pd.DataFrame, window_pp: float | None = None, kind: str | None = None) -> pd.DataFrame:
    """Completed trials with the columns the explorer filters, plots and sorts by; ``window_pp`` is
    the run's accuracy window (None: the default), ``kind`` the run's problem (``model``: a user's
    model, whose distillation teacher is the original model, not the seeded largest trial)."""
    if trials.empty or "state" not in trials:
        return trials.iloc[0:0]
    flagged = _with_fronts(trials, accuracy_window({"accuracy_window_pp": window_pp}))
    df = flagged[flagged["state"] == "COMPLETE"].copy()
    prec_cols = [c for c in df.columns if _is_precision(c)]
    prune_cols = [c for c in df.columns if _is_prune(c)]
    df["precisions"] = df[prec_cols].apply(lambda r: tuple(sorted(set(r))), axis=1) if prec_cols else [()] * len(df)
    df["precision_mix"] = df["precisions"].map(lambda p: "+".join(p) if p else "n/a")
    df["prune_mean"] = df[prune_cols].astype(float).mean(axis=1) if prune_cols else 0.0
    df["prune_max"] = df[prune_cols].astype(float).max(axis=1) if prune_cols else 0.0
    df["val_acc_pct"] = 100 * df["val_accuracy"].astype(float)
    df["test_acc_pct"] = 100 * df["test_accuracy"].astype(float)
    df["size_kb"] = df["size_bytes"].astype(float) / 1000
    df["status"] = [candidate_status(p, fr, f) for p, fr, f in zip(df["pareto"], df["front"], df["feasible"])]
    if "final_state" in df:  # a finalized run: the plain columns are the deployed model's
        df["finalized"] = df["final_state"].fillna("")
        df["search_val_acc_pct"] = 100 * df["search_val_accuracy"].astype(float)
    if "seeded" in df:
        largest = "unpruned fp32 (largest)" if kind == "model" else "fp32 teacher (largest)"
        df["role"] = df["seeded"].map({"largest": largest, "smallest": "smallest"}).fillna("")
    else:
        df["role"] = ""
    return df


@dataclass(frozen=True)
class Filters:
    """What the user narrowed the candidates to; ``None`` means no limit."""

    max_latency_ms: float | None = None
    min_accuracy_pct: float | None = None  # validation accuracy, as the search chose
    max_size_kb: float | None = None
    precisions: tuple[str, ...] | None = None  # keep candidates using only these precisions
    prune_range: tuple[float, float] | None = None  # mean prune ratio over stages, inclusive
    only_pareto: bool = False


def apply_filters(df: pd.DataFrame, f: Filters) -> pd.DataFrame:
    keep = pd.Series(True, index=df.index)
    if f.max_latency_ms is not None:
        keep &= df["latency_ms"] <= f.max_latency_ms
    if f.min_accuracy_pct is not None:
        keep &= df["val_acc_pct"] >= f.min_accuracy_pct
    if f.max_size_kb is not None:
        keep &= df["size_kb"] <= f.max_size_kb
    if f.precisions is not None:
        allowed = set(f.precisions)
        keep &= df["precisions"].map(lambda p: set(p) <= allowed)
    if f.prune_range is not None:
        lo, hi = f.prune_range
        keep &= (df["prune_mean"] >= lo - 1e-9) & (df["prune_mean"] <= hi + 1e-9)
    if f.only_pareto:
        keep &= df["pareto"]
    return df[keep]


TABLE_COLUMNS = {
    "number": "trial",
    "status": "status",
    "val_acc_pct": "val acc %",
    "search_val_acc_pct": "val acc % (search)",
    "finalized": "finalize",
    "test_acc_pct": "test acc %",
    "latency_ms": "latency ms",
    "energy_mj": "energy mJ",
    "size_kb": "size KB",
    "params": "params",
    "macs": "MACs",
    "precision_mix": "precision",
    "prune_mean": "prune (mean)",
    "role": "role",
    "candidate": "candidate",
}


def table(df: pd.DataFrame, *, estimated: bool = False) -> pd.DataFrame:
    """The sortable table: one row per candidate, readable column names, best first."""
    cols = [c for c in TABLE_COLUMNS if c in df and not (c == "energy_mj" and df[c].isna().all())]
    out = df.sort_values(["front", "pareto", "val_accuracy", "latency_ms"],
                         ascending=[False, False, False, True])[cols].copy()  # fmt: skip
    for col, digits in (("val_acc_pct", 2), ("search_val_acc_pct", 2), ("test_acc_pct", 2), ("latency_ms", 4), ("energy_mj", 4),
                        ("size_kb", 1), ("prune_mean", 2)):  # fmt: skip
        if col in out:
            out[col] = out[col].astype(float).round(digits)
    names = dict(TABLE_COLUMNS)
    if estimated:
        names["latency_ms"] = "latency ms (est.)"
        names["energy_mj"] = "energy mJ (est.)"
    return out.rename(columns=names).reset_index(drop=True)


def filter_bounds(config: dict[str, Any], df: pd.DataFrame) -> tuple[list[str], float]:
    """The precisions and the largest pruning ratio the run's space allows (so the filters do not
    change, and drop new trials, while a search adds them); from the trials if the space is unreadable."""
    from autocompress.problems import describer

    try:
        dims = describer(config).dimensions()
    except AutoCompressError:
        return precision_options(df), float(df["prune_mean"].max()) if not df.empty else 0.0
    precisions = {p for k, v in dims.items() if _is_precision(k) for p in v}
    prune = max((r for k, v in dims.items() if _is_prune(k) for r in v), default=0.0)
    return _ordered(precisions | set(precision_options(df))), float(prune)


def precision_options(df: pd.DataFrame) -> list[str]:
    return _ordered({p for ps in df.get("precisions", []) for p in ps})


def _ordered(found: set[str]) -> list[str]:
    order = ["fp32", "fp16", "int8", "int4"]
    return sorted(found, key=lambda p: order.index(p) if p in order else len(order))


def teacher(trials: pd.DataFrame) -> pd.Series | None:
    """The fp32 teacher: the seeded largest network, when it completed."""
    if "seeded" not in trials:
        return None
    rows = trials[(trials["seeded"] == "largest") & (trials["state"] == "COMPLETE")]
    return None if rows.empty else rows.iloc[0]


def original(config: dict[str, Any]) -> pd.Series | None:
    """A user's model run's original model as loaded (config.yaml's ``baseline``, number -1): the
    search's distillation teacher and what it compresses, so the deltas are against it, as the
    search's own table's are. None for a run of our supernet (its reference is :func:`teacher`)."""
    base = config.get("baseline") if config.get("kind") == "model" else None
    if not isinstance(base, dict) or base.get("test_accuracy") is None:
        return None
    return pd.Series({"number": -1, **{k: base.get(k) for k in ("val_accuracy", "test_accuracy", "latency_ms",
                                                                 "size_bytes")}})  # fmt: skip


def teacher_deltas(row: pd.Series, ref: pd.Series) -> dict[str, float]:
    """Candidate minus teacher: accuracy in percentage points, latency in ms (and %), size in
    bytes (and the teacher-to-candidate size ratio)."""
    lat, ref_lat = float(row["latency_ms"]), float(ref["latency_ms"])
    size, ref_size = float(row["size_bytes"]), float(ref["size_bytes"])
    return {
        "val_accuracy_pp": 100 * (float(row["val_accuracy"]) - float(ref["val_accuracy"])),
        "test_accuracy_pp": 100 * (float(row["test_accuracy"]) - float(ref["test_accuracy"])),
        "latency_ms": lat - ref_lat,
        "latency_pct": 100 * (lat - ref_lat) / ref_lat if ref_lat else math.nan,
        "size_bytes": size - ref_size,
        "size_pct": 100 * (size - ref_size) / ref_size if ref_size else math.nan,
        "compression_x": ref_size / size if size else math.nan,
        "speedup_x": ref_lat / lat if lat else math.nan,
    }


def parts(config: dict[str, Any], row: pd.Series) -> pd.DataFrame:
    """The candidate's choices per part of the network (per stage for our supernet, per pruning
    group and precision part for a user's model), as the run's problem describes them.

    Raises:
        AutoCompressError: the run's space cannot be read.
    """
    from autocompress.problems import describer

    runs = describer(config)
    return pd.DataFrame(runs.parts(runs.row_candidate(row)))


def input_shape(config: dict[str, Any], row: pd.Series) -> tuple[int, int, int]:
    """(channels, height, width) of the candidate's exported file."""
    from autocompress.problems import describer

    runs = describer(config)
    return runs.input_shape(runs.row_candidate(row))


def kd_settings(row: pd.Series) -> dict[str, Any]:
    steps = int(row.get("finetune_steps", 0) or 0)
    alpha = float(row.get("kd_alpha", 0) or 0)
    return {
        "alpha": alpha,
        "temperature": float(row.get("kd_temperature", 0) or 0),
        "finetune_steps": steps,
        "distilled": steps > 0 and alpha > 0,
    }


def latency_breakdown(config: dict[str, Any], row: pd.Series) -> pd.DataFrame:
    """Predicted latency of each fused block of the candidate on the run's target (same table,
    same pruned geometry as the search), plus the per-inference overhead and precision changes.

    Raises:
        AutoCompressError: the run's space or target cannot be loaded any more, or the run's
            problem does not record a breakdown (a user's model is priced from its exported
            file during the search).
    """
    from autocompress.problems import describer

    runs = describer(config)
    if not hasattr(runs, "breakdown"):
        raise AutoCompressError("the per-layer breakdown of a user's model is not recorded in the run")
    pred, blocks = runs.breakdown(runs.row_candidate(row))
    rows = [
        {"block": f"{i:02d} {label}", "latency_ms": c.latency_ms, "precision": prec,
         "detail": c.label, "interpolated": c.interpolated}
        for i, ((label, prec), c) in enumerate(zip(blocks, pred.breakdown))
    ]  # fmt: skip
    rows.append({"block": "overhead", "latency_ms": pred.overhead_ms, "precision": "", "detail": "per inference",
                 "interpolated": False})  # fmt: skip
    if pred.transitions_ms:
        rows.append({"block": "precision changes", "latency_ms": pred.transitions_ms, "precision": "",
                     "detail": "entries into a reduced precision", "interpolated": False})  # fmt: skip
    return pd.DataFrame(rows)


def reference_name(ref: pd.Series | None) -> str:
    """What the deltas are against: "original" (a user's model, :func:`original`) or "teacher"."""
    return "original" if ref is not None and int(ref["number"]) < 0 else "teacher"


def compare(rows: list[pd.Series], *, ref: pd.Series | None = None, config: dict[str, Any] | None = None,
            ref_name: str = "teacher") -> pd.DataFrame:  # fmt: skip
    """Candidates side by side: one column per trial, one row per figure and choice (each part
    of the network as the run's problem describes it). On an estimated target the latency and
    energy rows say so, as every other view of them does."""
    from autocompress.problems import describer

    runs = describer(config or {}) if config else None
    est = " (ESTIMATED)" if (config or {}).get("target_estimated") else ""
    cols = {}
    for r in rows:
        d: dict[str, Any] = {
            "val acc %": f"{100 * float(r['val_accuracy']):.2f}",
            "test acc %": f"{100 * float(r['test_accuracy']):.2f}",
            f"latency{est}": format_ms(float(r["latency_ms"])),
            f"energy mJ{est}": "n/a" if pd.isna(r.get("energy_mj")) else round(float(r["energy_mj"]), 4),
            "size": format_bytes(float(r["size_bytes"])),
            "params": int(r["params"]),
            "MACs": int(r["macs"]),
            "feasible": bool(r.get("feasible")),
            "Pareto": bool(r.get("pareto")),
            "accuracy–latency front": bool(r.get("front")),
        }
        if ref is not None:
            dl = teacher_deltas(r, ref)
            d[f"Δ test acc vs {ref_name} (pp)"] = f"{dl['test_accuracy_pp']:+.2f}"
            d[f"latency vs {ref_name}"] = f"{1 / dl['speedup_x']:.2f}x"
            d[f"size vs {ref_name}"] = f"{1 / dl['compression_x']:.2f}x"
        if runs is not None:
            cand = runs.row_candidate(r)
            for part in runs.parts(cand):
                d[part["part"]] = ", ".join(f"{k} {_fmt(v)}" for k, v in part.items() if k != "part")
            d["input"] = "x".join(str(v) for v in runs.input_shape(cand))
        kd = kd_settings(r)
        d["KD"] = f"alpha {kd['alpha']:g}, T {kd['temperature']:g}, {kd['finetune_steps']} steps"
        cols[f"trial {int(r['number'])}"] = d
    return pd.DataFrame(cols).astype(str)


_EDGE = {"front": {"width": 1, "color": "#222"}, "Pareto": {"width": 1, "color": "#999"}}


def pareto_figure(df: pd.DataFrame, config: dict[str, Any], *, x: str = "latency", y: str = "validation",
                  color: str = "size"):  # fmt: skip
    """Accuracy vs latency (or size, energy): the accuracy–latency front solid and joined, other
    Pareto points outlined, dominated faded, over-budget crossed, the budget a dashed line; hover
    names the candidate."""
    import plotly.graph_objects as go

    xcol, ycol = X_AXES[x], Y_AXES[y]
    est = " (ESTIMATED)" if config.get("target_estimated") else ""
    xtitle = {
        "latency": f"predicted latency on {config.get('target')}{est}, ms",
        "size": "model size, KB (exported file)",
        "energy": f"predicted energy on {config.get('target')}{est}, mJ / inference",
    }[x]
    fig = go.Figure()
    plot = df.dropna(subset=[xcol, ycol])
    hover = (
        "trial %{customdata[0]} (%{customdata[1]})<br>%{customdata[2]}<br>val %{customdata[3]:.2f}% · "
        "test %{customdata[4]:.2f}%<br>latency %{customdata[5]:.4f} ms" + est + " · size %{customdata[6]:.1f} KB"
        "<extra></extra>"
    )
    custom = ["number", "status", "candidate", "val_acc_pct", "test_acc_pct", "latency_ms", "size_kb"]
    groups = [("front", 1.0, "circle", 12), ("Pareto", 0.8, "circle", 10), ("dominated", 0.35, "circle", 9),
              ("over budget", 0.45, "x", 9)]  # fmt: skip
    lead = next((g[0] for g in groups if (plot["status"] == g[0]).any()), "front")  # the one with the colour bar
    if color == "precision":
        mixes = sorted(plot["precision_mix"].unique())
        palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
        cmap = {m: palette[i % len(palette)] for i, m in enumerate(mixes)}
    for status, opacity, symbol, size in groups:
        part = plot[plot["status"] == status]
        if part.empty:
            continue
        if color == "precision":
            for mix, sub in part.groupby("precision_mix"):
                fig.add_trace(go.Scatter(
                    x=sub[xcol], y=sub[ycol], mode="markers", name=f"{status}: {mix}", legendgroup=status,
                    marker={"color": cmap[mix], "symbol": symbol, "size": size, "opacity": opacity,
                            "line": _EDGE.get(status, {"width": 0})},
                    customdata=sub[custom].to_numpy(), hovertemplate=hover,
                ))  # fmt: skip
        else:
            fig.add_trace(go.Scatter(
                x=part[xcol], y=part[ycol], mode="markers", name=status,
                marker={"color": part["size_kb"], "colorscale": "Viridis", "symbol": symbol, "size": size,
                        "opacity": opacity, "cmin": float(plot["size_kb"].min()), "cmax": float(plot["size_kb"].max()),
                        "showscale": status == lead,
                        "colorbar": {"title": "size KB"},
                        "line": _EDGE.get(status, {"width": 0})},
                customdata=part[custom].to_numpy(), hovertemplate=hover,
            ))  # fmt: skip
    interval = latency_interval_trace(plot, x, y)
    if interval is not None:
        fig.add_trace(interval)
    front = plot[plot["status"] == "front"].sort_values(xcol)
    if len(front) > 1 and x == "latency":  # the front is a line in accuracy vs latency only
        fig.add_trace(go.Scatter(x=front[xcol], y=front[ycol], mode="lines", name="accuracy–latency front",
                                 line={"color": "#1f4e79", "width": 1}, hoverinfo="skip"))  # fmt: skip
    budget = config.get("budget_ms")
    if x == "latency" and budget:
        fig.add_vline(x=float(budget), line_dash="dash", line_color="#c0392b",
                      annotation_text=f"budget {format_ms(float(budget))}", annotation_position="top right")  # fmt: skip
    fig.update_layout(
        xaxis_title=xtitle, yaxis_title=f"{y} accuracy ({accuracy_runtime_name(df)}), %", height=460,
        margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    return fig


def latency_interval_segments(rows: pd.DataFrame, x: str = "latency",
                               y: str = "validation") -> tuple[list, list] | None:  # fmt: skip
    """Each point's latency interval (``latency_lo_ms`` .. ``latency_hi_ms``, from the table's
    held-out error band) as a horizontal segment at its ``y`` accuracy, in plotly's form: x and
    y lists, segments separated by None. Drawn from its ends, not as error bars around the
    point: when the held-out errors all lie on one side, the interval does not contain the
    prediction. None when the axis is not latency or no row has an interval (a table without a
    band, a run written before the columns existed)."""
    if x != "latency" or "latency_lo_ms" not in rows or "latency_hi_ms" not in rows:
        return None
    lo = pd.to_numeric(rows["latency_lo_ms"], errors="coerce")
    hi = pd.to_numeric(rows["latency_hi_ms"], errors="coerce")
    keep = lo.notna() & hi.notna()
    if not keep.any():
        return None
    xs: list = []
    ys: list = []
    for a, b, acc in zip(lo[keep], hi[keep], rows.loc[keep, Y_AXES[y]], strict=True):
        xs += [float(a), float(b), None]
        ys += [float(acc), float(acc), None]
    return xs, ys


def latency_interval_trace(rows: pd.DataFrame, x: str = "latency", y: str = "validation"):
    """The plotly trace of :func:`latency_interval_segments` (grey, ends marked), or None."""
    import plotly.graph_objects as go

    seg = latency_interval_segments(rows, x, y)
    if seg is None:
        return None
    return go.Scatter(x=seg[0], y=seg[1], mode="lines+markers", name="latency interval", hoverinfo="skip",
                      line={"color": "#7f8c8d", "width": 1},
                      marker={"symbol": "line-ns", "size": 6, "line": {"width": 1, "color": "#7f8c8d"}})  # fmt: skip


def breakdown_figure(bd: pd.DataFrame, *, estimated: bool = False):
    import plotly.express as px

    fig = px.bar(bd, x="latency_ms", y="block", orientation="h", color="precision", hover_data=["detail"],
                 labels={"latency_ms": "predicted ms" + (" (ESTIMATED)" if estimated else ""), "block": ""})  # fmt: skip
    fig.update_layout(height=max(240, 26 * len(bd)), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      yaxis={"autorange": "reversed"})  # fmt: skip
    return fig


def default_choice(df: pd.DataFrame) -> int | None:
    """The trial to show first: the most accurate Pareto one, else the most accurate."""
    if df.empty:
        return None
    pool = df[df["pareto"]] if df["pareto"].any() else df
    return int(pool.sort_values(["val_accuracy", "latency_ms"], ascending=[False, True]).iloc[0]["number"])


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
