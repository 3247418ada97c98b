"""The search: an Optuna multi-objective study (maximise accuracy, minimise latency and size)
with the latency budget as a hard constraint (``trial.set_constraint``), driven ask/tell so
that other backends can reuse the same evaluation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from autocompress import __version__
from autocompress._io import storage_error
from autocompress.compress import check_supported
from autocompress.data import load_dataset
from autocompress.evaluate import Evaluator
from autocompress.exceptions import (
    AutoCompressError,
    BadInputError,
    CompressionUnavailableError,
    InfeasibleBudgetError,
    RunDirError,
    TargetError,
    WriteError,
)
from autocompress.fidelity import FIDELITIES, Halving, evaluate_at_fidelity
from autocompress.hardware.targets import get_target
from autocompress.results import (
    CONFIG_FILE,
    STUDY_FILE,
    STUDY_NAME,
    pareto_frame,
    pareto_numbers,
    read_config,
    write_config,
    write_results,
)
from autocompress.space import Candidate, load_space, resolve_space_path
from autocompress.storage import (
    WORKER_ATTR,
    fail_stale,
    heartbeat,
    live_foreign_trials,
    open_storage,
    redact,
    requeue_interrupted,
    resolve_storage,
    study_exists,
    worker_alive,
    worker_id,
)
from autocompress.storage import describe as describe_storage
from autocompress.supernet import load_or_train
from autocompress.units import format_ms

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize", "minimize")
METRICS = ("val_accuracy", "latency_ms", "size_bytes")
MAX_CONSECUTIVE_FAILURES = 5
# What must match for --resume to continue a study rather than mix two different searches.
RESUME_KEYS = ("target", "budget_ms", "space_fingerprint", "seed")


SAMPLERS = ("tpe", "nsga2", "gp", "random")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's own samplers, seeded; each reads the budget constraint from ``trial.constraints``
    (Optuna 5's ``Trial.set_constraint``; the samplers' ``constraints_func`` is deprecated).

    TPE runs with ``constant_liar`` so that workers sharing a study do not propose the
    candidates other workers are evaluating; alone it changes nothing (no trial is running
    while it samples).
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8, constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "gp":
        # Optuna's GP-based Bayesian optimisation: log-EHVI over the three objectives, times the
        # probability of feasibility from a GP per constraint.
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise BadInputError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")


@dataclass(frozen=True)
class SearchConfig:
    target: str
    budget_ms: float
    space: str | Path | None = None
    dataset: str | None = None
    data_dir: Path | None = None
    subset: int | None = None
    trials: int = 30
    timeout_s: float | None = None
    seed: int = 0
    sampler: str = "tpe"
    run_dir: Path | None = None
    runs_root: Path = Path("runs")
    resume: bool = False
    max_size_bytes: int | None = None
    retrain_supernet: bool = False
    storage: str | None = None  # None: sqlite in the run dir (or, on --resume, the run's recorded one)
    fidelity: str = "full"  # full | halving (see autocompress/fidelity.py)
    eta: int = 3
    warm_start: Path | None = None
    backend: str = "local"  # local | ray
    workers: int = 1
    address: str | None = None
    # bring your own model (autocompress.byom): FILE.py:FUNCTION or package.module:FUNCTION
    model: str | None = None
    weights: Path | None = None
    input_shape: str | None = None


@dataclass
class SearchOutcome:
    run_dir: Path
    config: dict[str, Any]
    trials: pd.DataFrame
    pareto: pd.DataFrame
    new_trials: int = 0
    supernet_cached: bool = False
    supernet_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Hooks:
    """Progress callbacks the CLI plugs its rich display into (all optional)."""

    supernet_step: Callable[[int, int, float], None] | None = None
    supernet_start: Callable[[bool], None] | None = None
    trial_done: Callable[[int, int, float | None, dict[str, Any]], None] | None = None
    search_start: Callable[[int, int], None] | None = None


def run_search(cfg: SearchConfig, hooks: Hooks | None = None) -> SearchOutcome:
    """Run (or resume) a search and write its run directory.

    Raises:
        AutoCompressError: bad input, found before any training where possible.
        InfeasibleBudgetError: trials completed but none met the budget (results are kept).
    """
    hooks = hooks or Hooks()
    if cfg.trials < 1:
        raise BadInputError(f"--trials must be at least 1; got {cfg.trials}")
    if cfg.timeout_s is not None and not (cfg.timeout_s > 0 and math.isfinite(cfg.timeout_s)):
        raise BadInputError(f"--timeout must be a positive number of seconds; got {cfg.timeout_s}")
    make_sampler(cfg.sampler, cfg.seed)  # an unknown sampler fails now, not after training
    _check_scaling_options(cfg)
    if cfg.model is not None or cfg.weights is not None:
        from autocompress.byom.search import run_model_search

        if cfg.model is None:
            raise BadInputError("--weights needs --model FILE.py:FUNCTION (the function that builds the network)")
        return run_model_search(cfg, hooks)
    target = get_target(cfg.target)
    table = target.table  # validates the whole table now, not mid-search
    space = load_space(cfg.space)
    check_supported(space, table.device.runtime)
    used = sorted({p for k, v in space.dimensions().items() if k.endswith("_precision") for p in v})
    missing = [p for p in used if p not in table.device.precisions]
    if missing:
        raise TargetError(
            f"space {space.name} uses {', '.join(missing)} but target {target.name} runs "
            f"{', '.join(table.device.precisions)}"
        )
    space_fp = f"{space.arch_fingerprint()}-{space.size()}"
    # the data first: a missing data set must not leave an empty run directory behind
    data = load_dataset(cfg.dataset or space.model.dataset, data_dir=cfg.data_dir,
                        subset=cfg.subset, seed=cfg.seed)  # fmt: skip
    run_dir = _prepare_run_dir(cfg, target.name, space_fp)
    old_config = read_config(run_dir) if cfg.resume and (run_dir / CONFIG_FILE).is_file() else {}
    storage_spec = resolve_storage(
        cfg.storage or old_config.get("storage", {}).get("url"), run_dir, STUDY_FILE
    )
    try:
        storage = open_storage(storage_spec)
        exists = study_exists(storage, STUDY_NAME)
    except AutoCompressError:
        if not cfg.resume:
            _discard_if_empty(run_dir)
        raise
    except Exception as exc:  # SQLAlchemy's or Optuna's: not a storage we can open
        if not cfg.resume:
            _discard_if_empty(run_dir)
        why = storage_error(exc) or " ".join(str(exc).split())[:200]
        raise RunDirError(f"cannot open the study in {redact(storage_spec)}: {why}") from exc
    if cfg.resume and old_config and not exists:
        raise RunDirError(f"cannot resume: {redact(storage_spec)} holds no autocompress study")
    # (--resume of a run killed before its study began, or a worker that is first to a shared
    # storage, simply starts the study)
    if not cfg.resume and exists:
        raise RunDirError(
            f"{redact(storage_spec)} already holds an autocompress study; pass --resume to join it"
        )
    warm = _warm_start_params(cfg.warm_start, space) if cfg.warm_start else []

    t0 = time.perf_counter()
    if hooks.supernet_start:
        hooks.supernet_start(False)
    supernet, report, cached = load_or_train(
        space, data, seed=cfg.seed, retrain=cfg.retrain_supernet, on_step=hooks.supernet_step
    )
    supernet_seconds = time.perf_counter() - t0

    config = {
        "autocompress_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": target.name,
        "target_label": target.source_label,
        "target_estimated": target.estimated,
        "budget_ms": cfg.budget_ms,
        "max_size_bytes": cfg.max_size_bytes,
        "objectives": dict(zip(METRICS, DIRECTIONS)),
        "sampler": cfg.sampler,
        "seed": cfg.seed,
        "trials": cfg.trials,
        "storage": describe_storage(storage_spec),
        "fidelity": {"mode": cfg.fidelity, **({"eta": cfg.eta} if cfg.fidelity == "halving" else {})},
        "backend": {"name": cfg.backend, "workers": cfg.workers,
                    **({"address": cfg.address} if cfg.address else {})},  # fmt: skip
        **({"warm_start": {"run": str(cfg.warm_start), "candidates": len(warm)}} if cfg.warm_start else {}),
        "space_path": str(resolve_space_path(cfg.space)),
        "space_fingerprint": space_fp,
        "space": space.to_dict(),
        "dataset": {**data.describe(), "spec": cfg.dataset or space.model.dataset, "subset": cfg.subset},
        "supernet": {**report.__dict__, "cached": cached},
    }
    if cfg.resume:
        old = old_config
        config["created"] = old.get("created", config["created"])
        config["resumed"] = [*old.get("resumed", []), datetime.now(UTC).isoformat(timespec="seconds")]
    write_config(run_dir, config)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=storage,
            directions=list(DIRECTIONS),
            load_if_exists=True,
        )
    except Exception as exc:  # SQLAlchemy's or Optuna's: the storage holds no study we can open
        why = storage_error(exc) or " ".join(str(exc).split())[:200]
        raise RunDirError(f"cannot open the study in {redact(storage_spec)}: {why}") from exc
    study.set_metric_names(list(METRICS))
    # Reseed on resume so a seeded sampler does not replay the trials it already proposed; a
    # worker joining a study others are running also mixes in its pid (same seed, same moment
    # would otherwise mean the same proposals).
    salt = os.getpid() if live_foreign_trials(study) else 0
    study.sampler = make_sampler(cfg.sampler, cfg.seed + len(study.trials) + salt)
    if cfg.resume:
        requeue_interrupted(study)
        fail_stale(study)
    if not study.trials:
        # Warm-start candidates (an earlier run's Pareto set) first, then the two ends of the
        # space: the largest (the fp32 teacher, the accuracy reference every Pareto point is
        # compared with) and the smallest network.
        for params, attrs in warm:
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
        sampled = {k for k, v in space.dimensions().items() if len(v) > 1}
        for cand, role in ((space.largest(), "largest"), (space.smallest(), "smallest")):
            params = {k: v for k, v in cand.to_flat().items() if k in sampled}
            study.enqueue_trial(params, user_attrs={"seeded": role}, skip_if_exists=True)

    try:
        (run_dir / "models").mkdir(exist_ok=True)
        if cfg.backend == "ray":
            from autocompress.ray_backend import run_ray

            new = run_ray(study, storage_spec, space, cfg, config, run_dir, hooks)
        else:
            evaluator = Evaluator(space=space, data=data, supernet=supernet, target=target,
                                  models_dir=run_dir / "models", supernet_key=report.key, seed=cfg.seed)  # fmt: skip
            new = _optimize(study, space, evaluator, cfg, config, run_dir, hooks)
        trials = write_results(run_dir, study, config)
    except Exception as exc:  # a full or read-only disk: say so, and how to continue
        why = str(exc) if isinstance(exc, WriteError) else storage_error(exc)
        if why is None:
            raise
        if not isinstance(exc, WriteError):
            why = f"cannot write to run directory {run_dir}: {why}"
        raise WriteError(
            f"{why}; the trials completed so far are kept in {run_dir / STUDY_FILE}: free some space, "
            "then continue with --resume"
        ) from exc
    front = pareto_frame(trials)
    outcome = SearchOutcome(run_dir, config, trials, front, new, cached, supernet_seconds)
    done = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    if not done.empty and front.empty:
        fastest = float(done["latency_ms"].min())
        raise InfeasibleBudgetError(
            f"no candidate met the budget of {format_ms(cfg.budget_ms)} on {target.name}; the fastest "
            f"of {len(done)} took {format_ms(fastest)} (results kept in {run_dir})"
        )
    return outcome


def _optimize(
    study: optuna.Study,
    space: Any,
    evaluator: Evaluator,
    cfg: SearchConfig,
    config: dict[str, Any],
    run_dir: Path,
    hooks: Hooks,
) -> int:
    """The ask/tell loop; returns how many trials this call completed."""
    def completed() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def claimed() -> int:
        # trials other live workers are evaluating count too: N processes with --trials T end
        # with T completed trials between them, not T each
        return completed() + live_foreign_trials(study)

    start = time.monotonic()
    new = 0
    failures = 0
    if hooks.search_start:
        hooks.search_start(completed(), cfg.trials)
    while claimed() < cfg.trials:
        if cfg.timeout_s is not None and time.monotonic() - start > cfg.timeout_s:
            break
        fail_stale(study)  # trials of workers (on any host) whose heartbeat stopped: failed, re-queued
        trial = study.ask()
        trial.set_user_attr(WORKER_ATTR, worker_id())
        cand: Candidate = space.sample(trial)
        flat = cand.to_flat()
        trial.set_user_attr("candidate", flat)
        trial.set_user_attr("description", cand.describe())
        try:
            twin = find_twin(study, flat, trial.number)
            if twin is not None:
                result = dict(twin.user_attrs["result"])
                trial.set_user_attr("duplicate_of", twin.number)
            else:
                with heartbeat(study, trial):
                    result = score_candidate(evaluator, cand, trial.number, study=study, cfg=cfg)
        except (KeyboardInterrupt, CompressionUnavailableError, TargetError):
            study.tell(trial, state=TrialState.FAIL)
            write_results(run_dir, study, config)
            raise
        except Exception as exc:  # a broken candidate must not end an hours-long search
            if storage_error(exc) is not None:  # ... but a full disk fails every later one too
                with contextlib.suppress(Exception):
                    study.tell(trial, state=TrialState.FAIL)
                raise
            failures += 1
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            write_results(run_dir, study, config)
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise AutoCompressError(
                    f"{failures} trials in a row failed (last: {type(exc).__name__}: {exc}); "
                    f"see the error column of {run_dir / 'trials.parquet'}"
                ) from None
            continue
        failures = 0
        trial.set_user_attr("result", result)
        for name, value in constraint_values(result, cfg).items():
            trial.set_constraint(name, value)
        frozen = study.tell(trial, [result[m] for m in METRICS])
        new += 1
        write_results(run_dir, study, config)
        report_trial(study, frozen, hooks)
    return new


def report_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial, hooks: Hooks) -> None:
    """Tell the progress display about a finished trial."""
    if not hooks.trial_done:
        return
    result = frozen.user_attrs["result"]
    best = best_full_fidelity_accuracy(study)
    info = {**result, "feasible": frozen.constraints["latency"] <= 0,
            "description": frozen.user_attrs.get("description", ""),
            "duplicate_of": frozen.user_attrs.get("duplicate_of")}  # fmt: skip
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    hooks.trial_done(done, frozen.number, best, info)


def best_full_fidelity_accuracy(study: optuna.Study) -> float | None:
    numbers = pareto_numbers(study)
    return max((t.values[0] for t in study.get_trials(deepcopy=False) if t.number in numbers), default=None)


def constraint_values(result: dict[str, Any], cfg: SearchConfig) -> dict[str, float]:
    """The hard limits, as Optuna constraints (feasible when <= 0)."""
    out = {"latency": result["latency_ms"] - cfg.budget_ms}
    if cfg.max_size_bytes is not None:
        out["size"] = result["size_bytes"] - cfg.max_size_bytes
    return out


def score_candidate(evaluator: Evaluator, cand: Candidate, number: int, *, study: optuna.Study,
                    cfg: SearchConfig) -> dict[str, Any]:  # fmt: skip
    """The evaluation both backends run: full fidelity, or successive halving over fine-tune steps."""

    def feasible(result: dict[str, Any]) -> bool:
        return all(v <= 0 for v in constraint_values(result, cfg).values())

    def rung() -> list[float]:
        return [
            float(t.user_attrs["result"]["low_val_accuracy"])
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("result", {}).get("low_val_accuracy") is not None
            and t.user_attrs.get("duplicate_of") is None
            and t.constraints and all(v <= 0 for v in t.constraints.values())
        ]

    return evaluate_at_fidelity(
        lambda c: evaluator.evaluate(c, number).to_dict(),
        cand,
        halving=Halving(cfg.eta) if cfg.fidelity == "halving" else None,
        feasible=feasible,
        rung=rung,
    )


def find_twin(study: optuna.Study, flat: dict[str, Any], number: int,
              wait_s: float = 900.0) -> optuna.trial.FrozenTrial | None:  # fmt: skip
    """A trial of the study (any worker's) that already evaluated this candidate.

    When another live worker is evaluating the same candidate right now, wait for its result
    rather than compute it twice (up to ``wait_s``; after that, or if that worker dies, None).
    """
    key = _key(flat)
    deadline = time.monotonic() + wait_s
    while True:
        pending = False
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if t.number == number or _key(t.user_attrs.get("candidate", {})) != key:
                continue
            if t.state == TrialState.COMPLETE and "result" in t.user_attrs:
                return t
            if t.state == TrialState.RUNNING and t.number < number and "duplicate_of" not in t.user_attrs \
                    and worker_alive(t.user_attrs.get(WORKER_ATTR)) is not False:
                pending = True
        if not pending or time.monotonic() > deadline:
            return None
        time.sleep(2.0)


def _key(flat: dict[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in flat.items()))


def _check_scaling_options(cfg: SearchConfig) -> None:
    if cfg.sampler not in SAMPLERS:
        raise BadInputError(f"unknown sampler {cfg.sampler!r}; use one of {', '.join(SAMPLERS)}")
    if cfg.fidelity not in FIDELITIES:
        raise BadInputError(f"--fidelity must be one of {', '.join(FIDELITIES)}; got {cfg.fidelity!r}")
    if cfg.eta < 2:
        raise BadInputError(f"--eta must be at least 2; got {cfg.eta}")
    if cfg.backend not in ("local", "ray"):
        raise BadInputError(f"--backend must be local or ray; got {cfg.backend!r}")
    if cfg.workers < 1:
        raise BadInputError(f"--workers must be at least 1; got {cfg.workers}")
    if cfg.backend == "local" and (cfg.workers != 1 or cfg.address):
        raise BadInputError("--workers and --address need --backend ray (or start more processes with --resume)")
    if cfg.warm_start is not None and not (cfg.warm_start / "pareto.csv").is_file():
        raise RunDirError(f"cannot warm-start from {cfg.warm_start}: it holds no pareto.csv")


def _warm_start_params(run: Path, space: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The Pareto candidates of an earlier run that this space can express, as enqueue arguments."""
    try:
        front = pd.read_csv(run / "pareto.csv")
    except (OSError, ValueError) as exc:
        raise RunDirError(f"cannot warm-start from {run}: pareto.csv is unreadable ({exc})") from None
    dims = space.dimensions()
    sampled = {k for k, v in dims.items() if len(v) > 1}
    out = []
    for _, row in front.iterrows():
        try:
            cand = Candidate.from_flat({k: row[k] for k in dims if k in row})
        except (AutoCompressError, ValueError, TypeError):
            continue
        if not space.contains(cand):
            continue
        params = {k: v for k, v in cand.to_flat().items() if k in sampled}
        out.append((params, {"warm_start": f"{run.name}#{int(row['number'])}"}))
    return out


def _prepare_run_dir(cfg: SearchConfig, target: str, space_fp: str) -> Path:
    if cfg.resume:
        run_dir = cfg.run_dir or _latest_run(cfg.runs_root)
        if not (run_dir / STUDY_FILE).is_file() and not (run_dir / CONFIG_FILE).is_file():
            if cfg.storage is None:
                raise RunDirError(f"cannot resume: {run_dir} holds no study ({STUDY_FILE} is missing)")
            # a worker joining a shared study from a fresh run directory
        old = read_config(run_dir) if (run_dir / CONFIG_FILE).is_file() else {}
        if old:
            _check_version(run_dir, old)
        now = {"target": target, "budget_ms": cfg.budget_ms, "space_fingerprint": space_fp, "seed": cfg.seed}
        for key in RESUME_KEYS:
            if key in old and old[key] != now[key]:
                raise RunDirError(
                    f"cannot resume {run_dir}: it was started with {key}={old[key]!r}, "
                    f"not {now[key]!r}; pass the same settings or start a new run"
                )
        _remove_stale_temp_files(run_dir)
        sqlite = run_dir / STUDY_FILE  # the default storage; a shared one lives elsewhere
        with open(sqlite, "rb") if sqlite.is_file() else contextlib.nullcontext(None) as fh:
            if fh is not None and fh.read(16) != b"SQLite format 3\x00":
                raise RunDirError(f"cannot resume {run_dir}: {STUDY_FILE} is not an SQLite database "
                                  "(truncated or overwritten)")  # fmt: skip
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = cfg.run_dir or cfg.runs_root / f"{target}-{cfg.budget_ms:g}ms-{stamp}"
        # config.yaml is written when the study begins: a run killed before that (during the
        # supernet training) may be started again with the same command
        if (run_dir / CONFIG_FILE).exists():
            raise RunDirError(
                f"{run_dir} already holds a search; pass --resume to continue it, or another --run-dir"
            )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"cannot write to run directory {run_dir}: {exc.strerror or exc}") from None
    return run_dir


def _discard_if_empty(run_dir: Path) -> None:
    """A run directory this command just made, holding no file yet: remove it again."""
    if run_dir.is_dir() and not any(p.is_file() for p in run_dir.rglob("*")):
        shutil.rmtree(run_dir, ignore_errors=True)


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Temporary files a killed run left (the real files beside them are whole: see _io)."""
    for pattern in (".*.tmp", "models/.*.tmp", "models/.trial_*.fp32.onnx"):
        for path in run_dir.glob(pattern):
            with contextlib.suppress(OSError):
                path.unlink()
    for folder in run_dir.glob("models/.trial_*"):  # an evaluation's scratch folder
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _check_version(run_dir: Path, old: dict[str, Any]) -> None:
    """A run written by another major.minor version may mean something else: refuse to mix."""
    theirs = str(old.get("autocompress_version", ""))
    if not theirs:
        raise RunDirError(f"cannot resume {run_dir}: its config.yaml was not written by autocompress "
                          "(no autocompress_version)")  # fmt: skip
    if theirs.split(".")[:2] != __version__.split(".")[:2]:
        raise RunDirError(
            f"cannot resume {run_dir}: it was written by autocompress {theirs}, this is {__version__}; "
            f"start a new run (or resume it with autocompress {theirs})"
        )


def _latest_run(root: Path) -> Path:
    runs = [p for p in root.glob("*") if (p / CONFIG_FILE).is_file()] if root.is_dir() else []
    if not runs:
        raise RunDirError(f"nothing to resume: no run in {root}; pass --run-dir")
    return max(runs, key=lambda p: (p / CONFIG_FILE).stat().st_mtime)
