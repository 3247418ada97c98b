"""The search: an Optuna multi-objective study (maximise accuracy, minimise latency and size)
with the latency budget as a hard constraint (``trial.set_constraint``), driven ask/tell so
that other backends can reuse the same evaluation.
"""

from __future__ import annotations

import logging
import math
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
)
from autocompress.hardware.targets import get_target
from autocompress.results import (
    STUDY_FILE,
    STUDY_NAME,
    pareto_frame,
    read_config,
    storage_url,
    write_config,
    write_results,
)
from autocompress.space import Candidate, load_space, resolve_space_path
from autocompress.supernet import load_or_train
from autocompress.units import format_ms

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize", "minimize")
METRICS = ("val_accuracy", "latency_ms", "size_bytes")
MAX_CONSECUTIVE_FAILURES = 5
# What must match for --resume to continue a study rather than mix two different searches.
RESUME_KEYS = ("target", "budget_ms", "space_fingerprint", "seed")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's own samplers; each reads the budget constraint from ``trial.constraints``."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise BadInputError(f"unknown sampler {name!r}; use one of tpe, nsga2, random")


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
    if cfg.model is not None or cfg.weights is not None:
        from autocompress.byom.search import run_model_search

        if cfg.model is None:
            raise BadInputError("--weights needs --model FILE.py:FUNCTION (the function that builds the network)")
        return run_model_search(cfg, hooks)
    target = get_target(cfg.target)
    table = target.table  # validates the whole table now, not mid-search
    space = load_space(cfg.space)
    check_supported(space)
    used = sorted({p for k, v in space.dimensions().items() if k.endswith("_precision") for p in v})
    missing = [p for p in used if p not in table.device.precisions]
    if missing:
        raise TargetError(
            f"space {space.name} uses {', '.join(missing)} but target {target.name} runs "
            f"{', '.join(table.device.precisions)}"
        )
    space_fp = f"{space.arch_fingerprint()}-{space.size()}"
    run_dir = _prepare_run_dir(cfg, target.name, space_fp)

    data = load_dataset(cfg.dataset or space.model.dataset, data_dir=cfg.data_dir,
                        subset=cfg.subset, seed=cfg.seed)  # fmt: skip
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
        "space_path": str(resolve_space_path(cfg.space)),
        "space_fingerprint": space_fp,
        "space": space.to_dict(),
        "dataset": {**data.describe(), "spec": cfg.dataset or space.model.dataset, "subset": cfg.subset},
        "supernet": {**report.__dict__, "cached": cached},
    }
    if cfg.resume:
        old = read_config(run_dir)
        config["created"] = old.get("created", config["created"])
        config["resumed"] = [*old.get("resumed", []), datetime.now(UTC).isoformat(timespec="seconds")]
    write_config(run_dir, config)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage_url(run_dir),
        directions=list(DIRECTIONS),
        load_if_exists=True,
    )
    study.set_metric_names(list(METRICS))
    # Reseed on resume so a seeded sampler does not replay the trials it already proposed.
    study.sampler = make_sampler(cfg.sampler, cfg.seed + len(study.trials))
    if cfg.resume:
        _requeue_interrupted(study)
    elif not study.trials:
        # Start from the two ends of the space: the largest (the fp32 teacher, the accuracy
        # reference every Pareto point is compared with) and the smallest network.
        sampled = {k for k, v in space.dimensions().items() if len(v) > 1}
        for cand, role in ((space.largest(), "largest"), (space.smallest(), "smallest")):
            params = {k: v for k, v in cand.to_flat().items() if k in sampled}
            study.enqueue_trial(params, user_attrs={"seeded": role})

    evaluator = Evaluator(space=space, data=data, supernet=supernet, target=target,
                          models_dir=run_dir / "models", supernet_key=report.key, seed=cfg.seed)  # fmt: skip
    (run_dir / "models").mkdir(exist_ok=True)
    new = _optimize(study, space, evaluator, cfg, config, run_dir, hooks)

    trials = write_results(run_dir, study, config)
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
    seen: dict[tuple, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "candidate" in t.user_attrs:
            seen.setdefault(_key(t.user_attrs["candidate"]), t)

    def completed() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    start = time.monotonic()
    new = 0
    failures = 0
    if hooks.search_start:
        hooks.search_start(completed(), cfg.trials)
    while completed() < cfg.trials:
        if cfg.timeout_s is not None and time.monotonic() - start > cfg.timeout_s:
            break
        trial = study.ask()
        cand: Candidate = space.sample(trial)
        flat = cand.to_flat()
        trial.set_user_attr("candidate", flat)
        trial.set_user_attr("description", cand.describe())
        twin = seen.get(_key(flat))
        try:
            if twin is not None:
                result = dict(twin.user_attrs["result"])
                trial.set_user_attr("duplicate_of", twin.number)
            else:
                result = evaluator.evaluate(cand, trial.number).to_dict()
        except (KeyboardInterrupt, CompressionUnavailableError, TargetError):
            study.tell(trial, state=TrialState.FAIL)
            write_results(run_dir, study, config)
            raise
        except Exception as exc:  # a broken candidate must not end an hours-long search
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
        trial.set_constraint("latency", result["latency_ms"] - cfg.budget_ms)
        if cfg.max_size_bytes is not None:
            trial.set_constraint("size", result["size_bytes"] - cfg.max_size_bytes)
        frozen = study.tell(trial, [result[m] for m in METRICS])
        seen.setdefault(_key(flat), frozen)
        new += 1
        write_results(run_dir, study, config)
        if hooks.trial_done:
            best = max((t.values[0] for t in study.best_trials), default=None)
            info = {**result, "feasible": frozen.constraints["latency"] <= 0, "description": cand.describe(),
                    "duplicate_of": frozen.user_attrs.get("duplicate_of")}
            hooks.trial_done(completed(), trial.number, best, info)
    return new


def _key(flat: dict[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in flat.items()))


def _requeue_interrupted(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed process: mark them failed and queue their params again."""
    storage = study._storage  # the same storage Optuna's own fail_stale_trials() writes through
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)


def _prepare_run_dir(cfg: SearchConfig, target: str, space_fp: str) -> Path:
    if cfg.resume:
        run_dir = cfg.run_dir or _latest_run(cfg.runs_root)
        if not (run_dir / STUDY_FILE).is_file():
            raise RunDirError(f"cannot resume: {run_dir} holds no study ({STUDY_FILE} is missing)")
        old = read_config(run_dir)
        now = {"target": target, "budget_ms": cfg.budget_ms, "space_fingerprint": space_fp, "seed": cfg.seed}
        for key in RESUME_KEYS:
            if key in old and old[key] != now[key]:
                raise RunDirError(
                    f"cannot resume {run_dir}: it was started with {key}={old[key]!r}, "
                    f"not {now[key]!r}; pass the same settings or start a new run"
                )
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = cfg.run_dir or cfg.runs_root / f"{target}-{cfg.budget_ms:g}ms-{stamp}"
        if (run_dir / STUDY_FILE).exists():
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


def _latest_run(root: Path) -> Path:
    runs = [p for p in root.glob("*") if (p / STUDY_FILE).is_file()] if root.is_dir() else []
    if not runs:
        raise RunDirError(f"nothing to resume: no run in {root}; pass --run-dir")
    return max(runs, key=lambda p: (p / STUDY_FILE).stat().st_mtime)
