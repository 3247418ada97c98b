"""The run directory: resolved config, Optuna study, trials table, Pareto set, plot and report.

    runs/<name>/
      config.yaml      what was searched, against what, with which supernet
      study.db         the Optuna study (SQLite)
      trials.parquet   one row per trial, one column per choice and per result
      pareto.csv       the feasible, non-dominated trials: the accuracy-latency front first
      pareto.png       accuracy vs predicted latency, the front and the budget drawn
      models/          the exported file of every completed trial (final_NNNN.onnx: finalized)
      finalize/        the finalize phase: per-candidate state (trial_NNNN.json) and checkpoints
      report.md        a short summary with the next commands to run

After the finalize phase (``search/finalize.py``) the trials table holds the search-time and the
finalized numbers side by side: ``search_*`` (what the search measured), ``final_*`` (what the
long fine-tune's deployed file measured) and ``final_state``; the plain columns
(``val_accuracy``, ``model_path``, ...) are the deployed model's (the finalized one where
``final_state`` is ``finalized``), and the Pareto set, report, plot, explorer and export read them.

Every file is written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import io
import math
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from autocompress import __version__
from autocompress._io import atomic_path, atomic_write_text, check_regular_file, path_kind
from autocompress.budget import below_fastest_message, budget_message
from autocompress.exceptions import RunDirError
from autocompress.hardware.interval import NO_BAND, describe_band, row_interval
from autocompress.hardware.lut import ErrorBand
from autocompress.units import format_bytes, format_ms

RESULT_COLUMNS = ("val_accuracy", "test_accuracy", "latency_ms", "energy_mj", "size_bytes", "params", "macs")
# what export and finalize read of every completed trial (``trials_frame`` writes them all)
TRIALS_COLUMNS = ("number", "state", "feasible", "pareto", *RESULT_COLUMNS)
CONFIG_FILE = "config.yaml"
STUDY_FILE = "study.db"
STUDY_NAME = "autocompress"
# Pareto points more than this many percentage points of validation accuracy below the best
# feasible one are listed apart (``--accuracy-window``): fastest and smallest, but rarely wanted.
DEFAULT_ACCURACY_WINDOW_PP = 5.0


def storage_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"


def read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    if path_kind(path) not in (None, "a file"):  # a FIFO would block the read forever
        check_regular_file(path, "run configuration", RunDirError)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} is not an autocompress run (no {CONFIG_FILE})") from None
    except (OSError, yaml.YAMLError) as exc:
        raise RunDirError(f"{path} is unreadable: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path} is not a run configuration")
    for key, (kinds, what) in _CONFIG_TYPES.items():
        value = data.get(key)
        bad = value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds))
        if bad or (kinds == _NUMBER and value is not None and not (math.isfinite(value) and value >= 0)):
            raise RunDirError(f"{path}: {key} must be {what}, got {value!r} (edited by hand? autocompress "
                              "writes this file)")  # fmt: skip
    return data


_NUMBER = (int, float)
# what the readers of a run (export, finalize, explore, --resume) take from its config.yaml as they
# find it: a hand-edited value of another type is one line here, not a crash deep inside them
_CONFIG_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    **{k: (_NUMBER, "a number >= 0") for k in ("budget_ms", "accuracy_window_pp", "max_size_bytes")},
    **{k: ((int,), "a whole number") for k in ("seed", "trials")},
    **{k: ((str,), "text") for k in ("target", "budget_on", "kind", "space_path")},
    "target_estimated": ((bool,), "true or false"),
    **{k: ((dict,), "a mapping") for k in ("dataset", "space", "model", "finalize", "storage", "latency_range",
                                           "latency_error_band", "fidelity", "backend")},
    "resumed": ((list,), "a list"),
}


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False, width=100))


def pareto_numbers(study: Any) -> set[int]:
    """Trial numbers of the Pareto set: feasible, non-dominated, full-fidelity completed trials.

    Low-fidelity results (a short fine-tune under ``--fidelity halving``) never enter it, and so
    cannot hide a full-fidelity trial they happen to dominate. A trial that proposed a candidate
    already evaluated (``duplicate_of``) is the same model: only the first of the two is listed.
    """
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
    pts = []
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    numbers = {t.number for t in done}
    for t in done:
        if t.user_attrs.get("result", {}).get("fidelity", "full") != "full":
            continue
        if not t.constraints or any(v > 0 for v in t.constraints.values()):
            continue
        if t.user_attrs.get("duplicate_of") in numbers:
            continue
        pts.append((t.number, [s * v for s, v in zip(signs, t.values)]))
    front = set()
    for n, p in pts:
        dominated = any(
            all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p)) for _, q in pts
        )
        if not dominated:
            front.add(n)
    return front


def trials_frame(study: Any, window_pp: float = DEFAULT_ACCURACY_WINDOW_PP) -> pd.DataFrame:
    """One row per trial: number, state, every choice, every result, feasibility, Pareto flags
    (``pareto``, ``front``, ``far_below``: see :func:`mark_fronts`)."""
    pareto = pareto_numbers(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        row["candidate"] = t.user_attrs.get("description")
        row.update(t.user_attrs.get("candidate", {}))
        row.update(t.user_attrs.get("result", {}))
        cons = t.constraints
        row["latency_over_budget_ms"] = cons.get("latency") if cons else None
        row["feasible"] = bool(cons) and all(v <= 0 for v in cons.values())
        row["pareto"] = t.number in pareto
        row["duplicate_of"] = t.user_attrs.get("duplicate_of")
        row["retry_of"] = t.user_attrs.get("retry_of")
        row["seeded"] = t.user_attrs.get("seeded")
        row["warm_start"] = t.user_attrs.get("warm_start")
        row["error"] = t.user_attrs.get("error")
        if t.datetime_start and t.datetime_complete:
            row["duration_s"] = round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
        rows.append(row)
    frame = pd.DataFrame(rows)
    # every result column exists, even before any trial completed (params and MACs are the
    # final, pruned network's; the choices, s<i>_prune among them, come from each candidate)
    for col in RESULT_COLUMNS:
        if col not in frame:
            frame[col] = pd.Series([None] * len(frame), dtype="float64")
    if "retry_of" in frame:  # a trial number, blank where none (not 3.0)
        frame["retry_of"] = pd.to_numeric(frame["retry_of"], errors="coerce").astype("Int64")
    return mark_fronts(frame, window_pp) if not frame.empty else frame


def accuracy_window(config: dict[str, Any]) -> float:
    """The run's accuracy window in percentage points (runs written before it existed: the default)."""
    value = config.get("accuracy_window_pp")
    return DEFAULT_ACCURACY_WINDOW_PP if value is None else float(value)


def mark_fronts(trials: pd.DataFrame, window_pp: float = DEFAULT_ACCURACY_WINDOW_PP) -> pd.DataFrame:
    """The trials with two more flags beside ``pareto`` (feasible, non-dominated in accuracy,
    latency and size), which keeps its meaning:

    - ``far_below``: a Pareto point more than ``window_pp`` percentage points of validation
      accuracy below the best Pareto point (the best feasible full-fidelity candidate);
    - ``front``: a Pareto point within the window that no other is both at least as accurate as
      and at least as fast as (strictly better in one): the accuracy-latency front. Computing it
      over the Pareto points alone is enough: whatever dominates a point in accuracy and latency
      is itself dominated, in all three, by a Pareto point.

    The most accurate Pareto point is always on the front, so a run with any Pareto point has one.
    """
    out = trials.copy()
    pareto = out["pareto"].fillna(False).astype(bool) if "pareto" in out else pd.Series(False, index=out.index)
    acc = pd.to_numeric(out.get("val_accuracy"), errors="coerce") if "val_accuracy" in out else None
    out["front"] = False
    out["far_below"] = False
    if acc is None or not pareto.any():
        return out
    best = float(acc[pareto].max())
    far = pareto & (acc < best - window_pp / 100 - 1e-9)
    near = out.index[pareto & ~far]
    lat = pd.to_numeric(out["latency_ms"], errors="coerce")
    pts = [(i, float(acc[i]), float(lat[i])) for i in near]
    on_front = [
        i for i, a, ms in pts
        if not any(a2 >= a and ms2 <= ms and (a2 > a or ms2 < ms) for _, a2, ms2 in pts)
    ]  # fmt: skip
    out.loc[on_front, "front"] = True
    out["far_below"] = far
    return out


def pareto_groups(pareto: pd.DataFrame, window_pp: float = DEFAULT_ACCURACY_WINDOW_PP) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The Pareto set in the order a person reads it: the accuracy-latency front, the other Pareto
    points within the accuracy window (smaller, not faster), the ones far below the best; each
    fastest first. The flags are computed again with ``window_pp`` (a report re-rendered with
    another window, a trials table written before they existed)."""
    pareto = mark_fronts(pareto, window_pp)
    front = pareto["front"].fillna(False).astype(bool)
    far = pareto["far_below"].fillna(False).astype(bool)
    order = ["latency_ms", "val_accuracy"]
    sort = {"by": order, "ascending": [True, False]}
    return (pareto[front].sort_values(**sort), pareto[~front & ~far].sort_values(**sort),
            pareto[far].sort_values(**sort))  # fmt: skip


def far_below_line(pareto: pd.DataFrame, window_pp: float) -> str | None:
    """One line about the Pareto points far below the best, or None when there are none."""
    if pareto.empty:
        return None
    _, _, far = pareto_groups(pareto, window_pp)
    if far.empty:
        return None
    fastest = far.iloc[0]
    n = len(far)
    return (f"far below the best (more than {window_pp:g} pp under {100 * pareto['val_accuracy'].max():.2f}%): "
            f"{n} candidate{'s' if n != 1 else ''}, fastest {format_ms(fastest['latency_ms'])} at "
            f"{100 * fastest['val_accuracy']:.2f}% (trial{'s' if n != 1 else ''} "
            f"{', '.join(str(int(x)) for x in far['number'])})")  # fmt: skip


def pareto_frame(trials: pd.DataFrame, window_pp: float = DEFAULT_ACCURACY_WINDOW_PP) -> pd.DataFrame:
    """The Pareto set (``pareto`` rows): the accuracy-latency front first, then the other Pareto
    points within the accuracy window, then the ones far below the best (see :func:`pareto_groups`)."""
    if trials.empty or "pareto" not in trials:
        return trials.iloc[0:0]
    pareto = trials[trials["pareto"].fillna(False).astype(bool)]
    groups = [g for g in pareto_groups(pareto, window_pp) if not g.empty]
    return pd.concat(groups) if groups else trials.iloc[0:0]


def write_results(run_dir: Path, study: Any, config: dict[str, Any]) -> pd.DataFrame:
    """Rewrite the trials table, Pareto set, plot and report from the study (atomically)."""
    return write_trials(run_dir, trials_frame(study, accuracy_window(config)), config)


# the deployed model's columns, which the finalized model's replace where it is better on validation
DEPLOYED_COLUMNS = ("val_accuracy", "test_accuracy", "latency_ms", "energy_mj", "size_bytes", "params", "macs",
                    "model_path", "accuracy_runtime", "float_val_accuracy", "ptq_drop_pp", "qat_val_accuracy",
                    "qat_applied")  # fmt: skip
FINAL_COLUMNS = ("val_accuracy", "test_accuracy", "latency_ms", "energy_mj", "size_bytes", "model_path",
                 "qat_applied", "finetune_s")  # fmt: skip
FINALIZE_DIR = "finalize"


def finalize_states(run_dir: Path) -> dict[int, dict[str, Any]]:
    """The finalize phase's per-candidate states (``finalize/trial_NNNN.json``), by trial number."""
    import json

    out: dict[int, dict[str, Any]] = {}
    for path in sorted((run_dir / FINALIZE_DIR).glob("trial_*.json")):
        try:
            state = json.loads(path.read_text())
            out[int(state["number"])] = state
        except (OSError, ValueError, KeyError, TypeError):
            continue  # never half-written (atomic), but a hand-edited one is not worth a crash
    return out


def merge_finalized(trials: pd.DataFrame, run_dir: Path, window_pp: float = DEFAULT_ACCURACY_WINDOW_PP) -> pd.DataFrame:
    """The trials table with the finalize phase's numbers beside the search's (a table without
    any finalized candidate comes back as it is). Idempotent: a table merged before is first set
    back to its search-time numbers.

    Adds ``search_*`` (the search's numbers), ``final_*`` (the finalized file's, also when it
    was worse on validation and not deployed), ``final_state`` (``finalized``: the finalized
    file is deployed; ``kept``: it was not better on validation, the search's file stays;
    ``running``: interrupted), ``final_role`` (``teacher`` or ``candidate``), ``finalized_at``
    and ``final_schedule``. The plain columns become the deployed model's, and ``pareto``,
    ``front`` and ``far_below`` are computed again over them (``search_pareto`` keeps the search's).
    """
    states = finalize_states(run_dir)
    if trials.empty or (not states and "search_val_accuracy" not in trials):
        return trials
    out = trials.copy()
    if "search_val_accuracy" in out:  # merged before: back to the search's numbers
        for col in DEPLOYED_COLUMNS:
            if f"search_{col}" in out:
                out[col] = out[f"search_{col}"]
        out["pareto"] = out["search_pareto"]
    for col in DEPLOYED_COLUMNS:
        if col in out:
            out[f"search_{col}"] = out[col]
    out["search_pareto"] = out["pareto"]
    for col in ("final_state", "final_role", "finalized_at", "final_schedule", *(f"final_{c}" for c in FINAL_COLUMNS)):
        out[col] = pd.Series([None] * len(out), dtype="object")
    for number, st in states.items():
        idx = out.index[out["number"] == number]
        if idx.empty:
            continue
        i = idx[0]
        out.at[i, "final_state"] = st.get("state")
        out.at[i, "final_role"] = st.get("role")
        out.at[i, "finalized_at"] = st.get("finalized_at")
        out.at[i, "final_schedule"] = st.get("schedule_text")
        result = st.get("result") or {}
        for col in FINAL_COLUMNS:
            if col in result:
                out.at[i, f"final_{col}"] = result[col]
        if st.get("state") == "finalized":
            for col in DEPLOYED_COLUMNS:
                if col in result and col in out:
                    out.at[i, col] = result[col]
    for col in ("final_val_accuracy", "final_test_accuracy", "final_latency_ms", "final_energy_mj",
                "final_size_bytes", "final_finetune_s"):  # fmt: skip
        out[col] = pd.to_numeric(out[col], errors="coerce")
    for col in ("val_accuracy", "test_accuracy", "latency_ms", "size_bytes"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    if (out["final_state"] == "finalized").any():
        out["pareto"] = _pareto_of(out)
    return mark_fronts(out, window_pp)


def _pareto_of(trials: pd.DataFrame) -> pd.Series:
    """``pareto`` over the table's (deployed) numbers: what ``pareto_numbers`` computes over the
    study's, among the same rows (complete, feasible, full fidelity, not a duplicate)."""
    done = trials["state"] == "COMPLETE"
    feasible = trials["feasible"].fillna(False).astype(bool) if "feasible" in trials else done
    full = trials["fidelity"].fillna("full") == "full" if "fidelity" in trials else done
    numbers = set(trials.loc[done, "number"])
    dup = trials["duplicate_of"].isin(numbers) if "duplicate_of" in trials else pd.Series(False, index=trials.index)
    pool = trials[done & feasible & full & ~dup]
    pts = [(i, (-float(r["val_accuracy"]), float(r["latency_ms"]), float(r["size_bytes"]))) for i, r in pool.iterrows()]
    keep = {i for i, p in pts
            if not any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p)) for _, q in pts)}  # fmt: skip
    return pd.Series([i in keep for i in trials.index], index=trials.index)


def write_trials(run_dir: Path, trials: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """Write the trials table (with the finalize phase's numbers merged in), Pareto set, plot and
    report (atomically); returns the table written."""
    window = accuracy_window(config)
    trials = merge_finalized(trials, run_dir, window)
    with atomic_path(run_dir / "trials.parquet") as tmp:
        trials.to_parquet(tmp, index=False)
    front = pareto_frame(trials, window)
    buf = io.StringIO()
    front.to_csv(buf, index=False)
    atomic_write_text(run_dir / "pareto.csv", buf.getvalue())
    if not trials.empty and "latency_ms" in trials:
        plot_pareto(trials, config, run_dir / "pareto.png")
    atomic_write_text(run_dir / "report.md", render_report(run_dir, trials, front, config))
    return trials


def load_trials(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "trials.parquet"
    if path_kind(path) not in (None, "a file"):
        check_regular_file(path, "trials table", RunDirError)
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} has no trials yet ({path.name} is missing)") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path} is unreadable: {exc}") from None


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The run's configuration and trials table; a missing or corrupt run is a RunDirError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    config = read_config(run_dir)
    trials = load_trials(run_dir)
    if "number" not in trials or "state" not in trials:
        raise RunDirError(f"{run_dir / 'trials.parquet'} is not a trials table (no number/state columns)")
    missing = [c for c in TRIALS_COLUMNS if c not in trials]
    if missing and (trials["state"] == "COMPLETE").any():
        raise RunDirError(f"{run_dir / 'trials.parquet'} has no {', '.join(missing)} column{'s' if len(missing) > 1 else ''} "
                          f"(written by another autocompress version than {__version__}, or edited by hand?); "
                          "export and finalize need them: run the search again")  # fmt: skip
    return config, trials


def plot_pareto(trials: pd.DataFrame, config: dict[str, Any], out: Path) -> None:
    """Accuracy vs predicted latency: every completed trial, the accuracy-latency front as a line,
    the other Pareto points (smaller, not faster) and those far below the best apart, the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = trials[trials["state"] == "COMPLETE"]
    if done.empty:
        return
    feas, infeas = done[done["feasible"]], done[~done["feasible"]]
    window = accuracy_window(config)
    front, others, far = pareto_groups(pareto_frame(trials, window), window)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter(feas["latency_ms"], 100 * feas["val_accuracy"], s=18, c="#9bb7d4", label="feasible")
    if not infeas.empty:
        ax.scatter(infeas["latency_ms"], 100 * infeas["val_accuracy"], s=18, marker="x",
                   c="#d49b9b", label="over budget")  # fmt: skip
    if not front.empty:
        ax.plot(front["latency_ms"], 100 * front["val_accuracy"], "o-", c="#1f4e79", ms=6,
                label="accuracy–latency front")  # fmt: skip
    if not others.empty:
        ax.scatter(others["latency_ms"], 100 * others["val_accuracy"], s=40, facecolors="none",
                   edgecolors="#1f4e79", label="Pareto: smaller, not faster")  # fmt: skip
    if not far.empty:
        ax.scatter(far["latency_ms"], 100 * far["val_accuracy"], s=30, facecolors="none", edgecolors="#888",
                   label=f"Pareto, > {window:g} pp below the best")  # fmt: skip
    spans = done.assign(iv=[row_interval(r) for _, r in done.iterrows()]).dropna(subset=["iv"])
    if not spans.empty:  # each prediction's interval (the table's held-out error band), drawn
        # from its ends, not as bars around the point: a band whose held-out errors all lie on
        # one side gives an interval that does not contain the prediction
        acc = 100 * spans["val_accuracy"].astype(float)
        lo, hi = [iv[0] for iv in spans["iv"]], [iv[1] for iv in spans["iv"]]
        ax.hlines(acc, lo, hi, colors="#bbbbbb", lw=0.8, zorder=0, label="latency interval")
        ax.scatter([*lo, *hi], [*acc, *acc], marker="|", s=12, c="#bbbbbb", lw=0.8, zorder=0)
    if "final_state" in done:
        moved = done[done["final_state"] == "finalized"]
        for _, r in moved.iterrows():
            ax.annotate("", xy=(r["latency_ms"], 100 * r["val_accuracy"]),
                        xytext=(r["latency_ms"], 100 * r["search_val_accuracy"]),
                        arrowprops={"arrowstyle": "->", "color": "#2e7d32", "lw": 1})  # fmt: skip
        if not moved.empty:
            ax.scatter(moved["latency_ms"], 100 * moved["search_val_accuracy"], s=14, c="#bbbbbb",
                       label="before finalize (search)")  # fmt: skip
    budget = config.get("budget_ms")
    if budget:
        ax.axvline(budget, ls="--", c="#c0392b", lw=1)
        # the label at the top of the line, clear of the legend (lower right)
        ax.annotate(f"budget {format_ms(budget)}", (budget, ax.get_ylim()[1]), rotation=90,
                    va="top", ha="right", fontsize=8, color="#c0392b")  # fmt: skip
    label = config.get("target_label", "")
    est = " (ESTIMATED)" if config.get("target_estimated") else ""
    ax.set_xlabel(f"predicted latency on {config.get('target', '?')}{est}, ms")
    ax.set_ylabel(f"validation accuracy ({accuracy_runtime_name(done)}), %")
    ax.set_title(f"{config.get('space', {}).get('name', '')}: {len(done)} trials", fontsize=10)
    if label:
        fig.text(0.01, 0.01, f"latency: {label}", fontsize=7, color="#555")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def render_report(run_dir: Path, trials: pd.DataFrame, pareto: pd.DataFrame, config: dict[str, Any]) -> str:
    """report.md: the run in a few lines, then the accuracy–latency front, the other Pareto points
    and those far below the best (``pareto`` is :func:`pareto_frame`'s), then the next commands."""
    states = trials["state"].value_counts().to_dict() if not trials.empty else {}
    feasible = int(trials["feasible"].sum()) if "feasible" in trials else 0
    est = config.get("target_estimated")
    lat_note = "ESTIMATED, not measured on the device" if est else "from a measured table"
    sn = config.get("supernet", {})
    window = accuracy_window(config)
    lines = [
        f"# autocompress run `{run_dir.name}`",
        "",
        f"- target: **{config.get('target')}** — latency source: {config.get('target_label')}",
        f"- budget: {format_ms(config.get('budget_ms', 0))} (hard constraint)",
        f"- {interval_line(config)}",
        *([f"- **{config['latency_family_note']}**"] if config.get("latency_family_note") else []),
        *_budget_note(config),
        f"- data: {config.get('dataset', {}).get('name')} "
        f"(splits: {_splits(config.get('dataset', {}).get('split_sizes'))})",
        f"- space: {config.get('space', {}).get('name')}, sampler {config.get('sampler')}, "
        f"seed {config.get('seed')}",
        *_fidelity_line(config, trials),
        *_warm_start_line(config),
        _model_line(config) if config.get("kind") == "model" else
        f"- supernet: largest subnet test accuracy {100 * sn.get('largest_test_acc', 0):.2f}% "
        f"(torch, after {sn.get('epochs')} epochs, {sn.get('train_seconds')} s)",
        f"- trials: {sum(states.values())} ({', '.join(f'{k.lower()} {v}' for k, v in states.items())}),"
        f" {feasible} within budget",
        "",
        f"## Accuracy–latency front (feasible; latency {lat_note})",
        "",
    ]
    if pareto.empty:
        lines.append("No completed trial met the budget.")
    else:
        front, others, far = pareto_groups(pareto, window)
        lines += ["The most accurate model for its latency: no other candidate within the budget is both as",
                  f"accurate and faster. Candidates more than {window:g} pp below the best are listed apart.", ""]
        lines += _report_table(front, est)
        if not others.empty:
            lines += ["", "### Also on the Pareto set: smaller, not faster", "",
                      "Non-dominated once size counts too (accuracy, latency, size), but not on the front above.", ""]
            lines += _report_table(others, est)
        far_line = far_below_line(pareto, window)
        if far_line:
            lines += ["", f"{far_line[0].upper()}{far_line[1:]}; not listed above (`--accuracy-window` widens it)."]
        if est:
            lines += ["", "\\* estimated latency (roofline model), not measured on the device."]
    lines += _finalize_section(trials, config)
    lines += [
        "",
        f"Accuracies are {accuracy_runtime_name(trials)}'s on each exported file (`models/trial_NNNN.onnx`); the",
        "search chooses by validation accuracy, test accuracy is reported only.",
        "",
        *(["![Pareto plot](pareto.png)", ""] if (run_dir / "pareto.png").is_file() else []),
        "## Next",
        "",
        *_next_search(run_dir, config),
        "",
    ]
    return "\n".join(lines)


def _next_search(run_dir: Path, config: dict[str, Any]) -> list[str]:
    """More trials on the same study; a new search with a budget that some candidate meets when
    the budget is below the space's fastest candidate (more trials cannot help there)."""
    from autocompress.space import space_arg

    args = (_model_args(config) if config.get("kind") == "model" else f"--space {space_arg(str(config.get('space_path')))} ")
    upper = " --budget-on upper" if config.get("budget_on") == "upper" else ""
    entry = config.get("latency_range")
    if below_fastest_message(float(config.get("budget_ms", 0)), entry, str(config.get("target"))):
        assert isinstance(entry, dict)  # a message means a range was recorded
        low = float(entry["min_ms"])
        return ["The budget is below the space's fastest candidate: more trials will not meet it. A new search with",
                "a budget some candidate meets:", "",
                f"    autocompress search --target {config.get('target')} --budget {low:g}ms {args}"
                f"--trials {int(config.get('trials', 0))}{upper}"]  # fmt: skip
    return ["More trials on the same study (completed trials are kept):", "",
            f"    autocompress search --target {config.get('target')} --budget {config.get('budget_ms', 0):g}ms "
            f"{args}--run-dir {shlex.quote(str(run_dir))} --resume --trials {int(config.get('trials', 0)) + 30}{resume_args(config)}"
            f"{storage_arg(config, run_dir)}"]  # fmt: skip


def resume_args(config: dict[str, Any]) -> str:
    """The options of a run's resume command that its defaults would change: ``--seed`` (another
    one is refused), ``--sampler``, ``--fidelity halving --eta N`` and ``--budget-on upper``."""
    fidelity = config.get("fidelity") or {}
    return ((f" --seed {config['seed']}" if config.get("seed") else "")
            + (f" --sampler {config['sampler']}" if config.get("sampler", "tpe") != "tpe" else "")
            + (f" --fidelity halving --eta {fidelity.get('eta', 3)}" if fidelity.get("mode") == "halving" else "")
            + (" --budget-on upper" if config.get("budget_on") == "upper" else ""))  # fmt: skip


def storage_arg(config: dict[str, Any], run_dir: Path) -> str:
    """`` --storage URL`` for the resume command of a run whose study is not its own study.db
    (empty when it is); a password the config does not record is shown as ``***`` with what to do."""
    url = (config.get("storage") or {}).get("url")
    if not isinstance(url, str) or url == f"sqlite:///{(Path(run_dir) / STUDY_FILE).resolve()}":
        return ""
    hint = "   # put the password in place of ***" if "***" in url else ""
    return f" --storage '{url}'{hint}"


def _finalize_section(trials: pd.DataFrame, config: dict[str, Any]) -> list[str]:
    """The report's finalize section: search-time and finalized numbers of each finalized
    candidate and of the teacher (none when the run was not finalized)."""
    if "final_state" not in trials or not trials["final_state"].notna().any():
        return []
    fin = config.get("finalize") or {}
    rows = trials[trials["final_state"].notna()].sort_values("search_latency_ms")
    lines = ["", "## Finalized: a long distillation fine-tune after the search", "",
             f"Schedule: {fin.get('schedule_text', '?')}. The teacher gets the same training. A finalized file "
             "is deployed only when it scores better on validation than the search's (`finalized`); else the "
             "search's stays (`kept`). The tables above use the deployed numbers.", "",
             "| trial | role | state | search val | final val | search test | final test | latency | size |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    star = "*" if config.get("target_estimated") else ""

    def pct(v: Any) -> str:
        return "–" if v is None or v != v else f"{100 * float(v):.2f}%"

    for _, r in rows.iterrows():
        lines.append(f"| {r['number']} | {r['final_role']} | {r['final_state']} | {pct(r['search_val_accuracy'])} "
                     f"| {pct(r['final_val_accuracy'])} | {pct(r['search_test_accuracy'])} "
                     f"| {pct(r['final_test_accuracy'])} | {format_ms(r['latency_ms'])}{star} "
                     f"| {format_bytes(r['size_bytes'])} |")  # fmt: skip
    return lines


def _report_table(rows: pd.DataFrame, est: bool) -> list[str]:
    star = "*" if est else ""
    lines = ["| trial | val acc | test acc | latency | size | params | candidate |", "|---:|---:|---:|---:|---:|---:|---|"]
    for _, r in rows.iterrows():
        lines.append(
            f"| {r['number']} | {100 * r['val_accuracy']:.2f}% | {100 * r['test_accuracy']:.2f}% "
            f"| {latency_text(r, star)} | {format_bytes(r['size_bytes'])} "
            f"| {int(r['params']):,} | `{str(r.get('candidate', '')).replace('|', chr(92) + '|')}` |"
        )  # a pipe, even in a code span, would end the table cell (GitHub's tables)
    return lines


RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def accuracy_runtime_name(trials: pd.DataFrame) -> str:
    """Who measured the trials' accuracies, by name (``accuracy_runtime``: OpenVINO for OpenVINO
    targets; runs written before the column existed: ONNX Runtime)."""
    found = trials["accuracy_runtime"].dropna() if "accuracy_runtime" in trials else []
    names = sorted({RUNTIME_NAMES.get(v, v) for v in found if isinstance(v, str) and v})
    return " / ".join(names) or RUNTIME_NAMES["onnxruntime"]


def latency_text(row: Any, star: str = "") -> str:
    """A row's predicted latency with its interval when it has one: ``1.20 ms* [1.08 ms – 1.44 ms]``."""
    iv = row_interval(row)
    text = f"{format_ms(row['latency_ms'])}{star}"
    return text if iv is None else f"{text} [{format_ms(iv[0])} – {format_ms(iv[1])}]"


def interval_line(config: dict[str, Any], band: Any = None) -> str:
    """What the run's latency intervals rest on (config.yaml's ``latency_error_band``), and what
    the budget bounded (``budget_on``). With one trial's ``band`` (its ``latency_band``, e.g.
    ``fp32+int8``) only the bands its interval was taken from (or the all-precision one they fall
    back to); every band of the run without it, or for a row written before the column existed."""
    bands = config.get("latency_error_band") or {}
    if isinstance(band, str) and band:
        keys = [p if p in bands else "all" for p in band.split("+")]
        if all(k in bands for k in keys):
            bands = {k: bands[k] for k in dict.fromkeys(keys)}
    what = "; ".join(f"{p}: {describe_band(ErrorBand.model_validate(b))}" for p, b in bands.items()) if bands else NO_BAND
    upper = config.get("budget_on") == "upper"
    return (f"latency interval: {what}; the budget bounds "
            f"{'the upper end of the interval' if upper else 'the predicted latency'}")


def _fidelity_line(config: dict[str, Any], trials: pd.DataFrame) -> list[str]:
    """The report's line on successive halving (none for a full-fidelity run)."""
    fid = config.get("fidelity") or {}
    if fid.get("mode") != "halving":
        return []
    low = int((trials["fidelity"] == "low").sum()) if "fidelity" in trials else 0
    return [f"- fidelity: successive halving (eta {fid.get('eta')}): {low} trial(s) stayed at the short fine-tune "
            "and are kept out of the Pareto set"]  # fmt: skip


def warm_start_line(used: int, rows: int, run: Any) -> str:
    """What ``--warm-start`` enqueued: the earlier run's Pareto candidates this space can express."""
    left = rows - used
    return (f"warm start: {used} of the {rows} Pareto candidates of {run} enqueued first"
            + (f"; {left} lie outside this space (another choice of a dimension it fixes or lacks)" if left else ""))


def _warm_start_line(config: dict[str, Any]) -> list[str]:
    """The report's line on ``--warm-start`` (none without it)."""
    warm = config.get("warm_start")
    if not isinstance(warm, dict):
        return []
    used, rows = int(warm.get("candidates", 0)), warm.get("pareto_rows")
    return [f"- {warm_start_line(used, int(rows) if rows is not None else used, warm.get('run'))}"]


def _splits(sizes: Any) -> str:
    """``train 1,500, val 1,500, ...`` from config.yaml's split sizes (as it is when not a mapping)."""
    if not isinstance(sizes, dict):
        return str(sizes)
    return ", ".join(f"{k} {int(v):,}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in sizes.items())


def _budget_note(config: dict[str, Any]) -> list[str]:
    """The report's line when the run's budget excludes no candidate of its space, or every one
    (none otherwise)."""
    msg = budget_message(float(config.get("budget_ms", 0)), config.get("latency_range"), str(config.get("target")),
                         budget_on=config.get("budget_on", "point"), band=config.get("latency_error_band"))  # fmt: skip
    return [f"- **{msg}**"] if msg else []


def _model_line(config: dict[str, Any]) -> str:
    """The report's line about a user's model (bring your own model runs)."""
    m, b = config.get("model", {}), config.get("baseline", {})
    star = "*" if config.get("target_estimated") else ""
    return (f"- model: `{m.get('spec')}` with weights `{m.get('weights')}` (sha256 {str(m.get('weights_sha256'))[:12]}); "
            f"original: val {100 * b.get('val_accuracy', 0):.2f}%, test {100 * b.get('test_accuracy', 0):.2f}%, "
            f"{format_ms(b.get('latency_ms', 0))}{star}, {format_bytes(b.get('size_bytes', 0))}"
            f"{_scale_line(b.get('latency_scale') or {})}")  # fmt: skip


def _scale_line(scale: dict[str, Any]) -> str:
    """How the run's layer scale was fitted on the original (empty when it was not)."""
    nets = scale.get("networks") or {}
    if not scale.get("fitted") or not nets:
        return ""
    parts = [f"{p} x{scale['layer_scale'][p]}: predicted {format_ms(n['predicted_before_ms'])} with the table's "
             f"scale, measured {format_ms(n['measured_ms'])}" for p, n in nets.items()]  # fmt: skip
    return f"; layer table scaled for this run ({'; '.join(parts)})"


def _model_args(config: dict[str, Any]) -> str:
    m = config.get("model", {})
    space = f"--space {shlex.quote(str(config['space_path']))} " if config.get("space_path") else ""
    return (f"--model {shlex.quote(str(m.get('spec')))} --weights {shlex.quote(str(m.get('weights')))} "
            f"--input-shape {','.join(str(d) for d in m.get('input_shape', []))} {space}")  # fmt: skip
