"""``run_search``: one search, whatever the problem — check, run directory, study, backend, results.

The order is what keeps bad input cheap and the run directory whole: every option, the problem
(space, target, data, model) and the storage are checked before the run directory is made; the
heavy preparation (supernet training, baselines) comes after it, so a run killed there can be
started again with the same command; ``config.yaml`` is written when the study begins.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autocompress import __version__
from autocompress._io import storage_error
from autocompress.budget import below_fastest_message
from autocompress.exceptions import BadInputError, InfeasibleBudgetError, RunDirError, WriteError
from autocompress.hardware.interval import NO_BAND, bands_entry
from autocompress.hardware.targets import get_target
from autocompress.problems import Problem, ProblemHooks, build_problem
from autocompress.results import (
    CONFIG_FILE,
    DEFAULT_ACCURACY_WINDOW_PP,
    STUDY_FILE,
    accuracy_window,
    pareto_frame,
    read_config,
    warm_start_line,
    write_config,
    write_results,
)
from autocompress.search.config import DIRECTIONS, METRICS, Hooks, SearchConfig, SearchOutcome, check_options
from autocompress.search.loop import optimize
from autocompress.search.storage import check_storage_spec, redact, resolve_storage
from autocompress.search.storage import describe as describe_storage
from autocompress.search.study import (
    create_study,
    open_study_storage,
    prepare_run_dir,
    warm_start_params,
    with_recorded_data,
)
from autocompress.units import format_ms

log = logging.getLogger(__name__)


def run_search(cfg: SearchConfig, hooks: Hooks | None = None) -> SearchOutcome:
    """Run (or resume) a search and write its run directory.

    Raises:
        AutoCompressError: bad input, found before any training where possible.
        InfeasibleBudgetError: trials completed but none met the budget (results are kept).
    """
    hooks = hooks or Hooks()
    check_options(cfg)
    check_storage_spec(cfg.storage)
    resumed = prepare_run_dir(cfg, get_target(cfg.target).name, None, create=False)  # before data and latency work
    if cfg.resume:  # the new trials are scored on the run's own data
        cfg = with_recorded_data(cfg, resumed)
    if cfg.backend == "ray" and cfg.address:  # before the data and the supernet: Ray waits for it without end
        from autocompress.search.ray_adapter import check_reachable

        check_reachable(cfg.address)
    if cfg.budget_on == "upper":  # before the data and a re-calibration (seconds); its cached fit is read
        from autocompress.hardware.host_fit import apply_cached

        _check_bands_for_upper(apply_cached(get_target(cfg.target)))
    problem = build_problem(
        target=cfg.target, space=cfg.space, dataset=cfg.dataset, data_dir=cfg.data_dir, subset=cfg.subset,
        seed=cfg.seed, model=cfg.model, weights=cfg.weights, input_shape=cfg.input_shape,
        retrain=cfg.retrain_supernet, device=cfg.device, recalibrate=cfg.recalibrate,
    )  # fmt: skip
    problem.check(ProblemHooks(profile_step=hooks.layers_profile, host_fit_step=hooks.host_fit, note=hooks.note))
    _note_small_validation(problem, hooks)
    target = problem.target
    _check_budget_range(cfg, problem, hooks)
    if cfg.budget_on == "upper":  # the table as re-calibrated to this machine
        _check_bands_for_upper(target)
    warm, warm_rows = warm_start_params(cfg.warm_start, problem) if cfg.warm_start else ([], 0)
    if cfg.warm_start:
        (hooks.note or log.warning)(warm_start_line(len(warm), warm_rows, cfg.warm_start))
    run_dir = prepare_run_dir(cfg, target.name, problem.fingerprint())
    old_config = read_config(run_dir) if cfg.resume and (run_dir / CONFIG_FILE).is_file() else {}
    own = recorded_storage(old_config, run_dir)
    storage_spec = resolve_storage(cfg.storage or own, run_dir, STUDY_FILE)
    if cfg.storage and old_config:  # a run's trials live in one study: another --storage would swap them
        theirs = resolve_storage(own, run_dir, STUDY_FILE)
        if _same_storage(theirs) != _same_storage(storage_spec):
            raise RunDirError(f"cannot resume {run_dir} on --storage {redact(storage_spec)}: its study is in "
                              f"{redact(theirs)}; leave --storage out, or join that study from a new --run-dir")  # fmt: skip
    storage = open_study_storage(cfg, run_dir, storage_spec)

    models_dir = run_dir / "models"
    models_dir.mkdir(exist_ok=True)
    prepared = problem.prepare(models_dir, ProblemHooks(train_start=hooks.supernet_start,
                                                        train_step=hooks.supernet_step, note=hooks.note))  # fmt: skip
    config = _config(cfg, problem, target, storage_spec, warm, prepared)
    if cfg.warm_start:
        config["warm_start"]["pareto_rows"] = warm_rows
    if cfg.accuracy_window_pp is None and old_config.get("accuracy_window_pp") is not None:
        config["accuracy_window_pp"] = old_config["accuracy_window_pp"]
    if cfg.resume and old_config.get("finalize"):
        config["finalize"] = old_config["finalize"]  # what a finalize phase of this run did so far
    if cfg.resume and old_config:
        config["created"] = old_config.get("created", config["created"])
        config["resumed"] = [*old_config.get("resumed", []), datetime.now(UTC).isoformat(timespec="seconds")]
    write_config(run_dir, config)
    study = create_study(storage, storage_spec, cfg, problem, warm)
    try:
        if cfg.backend == "ray":
            from autocompress.search.ray_adapter import run_ray

            new = run_ray(study, storage_spec, problem, cfg, config, run_dir, hooks)
        else:
            new = optimize(study, problem, cfg, config, run_dir, hooks)
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
    front = pareto_frame(trials, accuracy_window(config))
    if cfg.finalize != 0 and not front.empty:
        # the finalize phase, in this process after the search (whatever the backend): the chosen
        # candidates and the teacher trained longer, deployed only where better on validation
        from autocompress.search.finalize import finalize_candidates

        fin = finalize_candidates(problem, run_dir, config, top=cfg.finalize, hooks=hooks.finalize)
        config, trials, front = fin.config, fin.trials, fin.pareto
    supernet = prepared.get("supernet") or {}
    outcome = SearchOutcome(run_dir, config, trials, front, new, bool(supernet.get("cached")),
                            float(supernet.get("seconds", 0.0)))  # fmt: skip
    done = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    if not done.empty and front.empty:
        fastest = float(done["latency_ms"].min())
        raise InfeasibleBudgetError(
            f"no candidate met the budget of {format_ms(cfg.budget_ms)} on {target.name}; the fastest "
            f"of {len(done)} took {format_ms(fastest)} (results kept in {run_dir})"
        )
    return outcome


SMALL_VAL = 100  # a validation split under this many images makes the search's choices noisy


def _note_small_validation(problem: Problem, hooks: Hooks) -> None:
    """One warning when the validation split (what the search chooses by) is too small for its
    accuracies to tell candidates apart."""
    data = getattr(problem, "data", None)
    n = int(data.splits["val"].numel()) if data is not None and "val" in data.splits else 0
    if 0 < n < SMALL_VAL:
        line = (f"warning: the validation split holds {n} images: accuracies move in steps of {100 / n:.1f} points, "
                "so the search's choices between candidates are mostly noise; use more images (or a larger --subset)")  # fmt: skip
        (hooks.note or log.warning)(line)


def _check_bands_for_upper(target: Any) -> None:
    """``--budget-on upper`` bounds the upper end of each interval: every precision of the table
    needs a held-out error band."""
    lacking = [p for p in target.device.precisions if target.device.band(p) is None]
    if lacking:
        has = sorted(target.device.error_band)
        why = f"it records bands for {', '.join(has)} only" if has else NO_BAND
        raise BadInputError(
            f"--budget-on upper needs the held-out error band of target {target.name}'s table, and it records "
            f"none for {', '.join(lacking)} ({why}); use --budget-on point, or record them with "
            f"'autocompress validate-latency --target {target.name} --precision P' for each"
        )


def _same_storage(spec: str) -> str:
    """A storage as compared for ``--resume``: SQLite files by their resolved path, passwords out."""
    if spec.startswith("sqlite:///"):
        return f"sqlite:///{Path(spec.removeprefix('sqlite:///')).expanduser().resolve()}"
    return redact(spec)


def recorded_storage(old_config: dict[str, Any], run_dir: Path) -> str | None:
    """The storage ``--resume`` reopens: the one the run recorded, except that a run directory
    holding its own ``study.db`` resumes that one (None), wherever the recorded SQLite file was: a
    copied or moved run directory records the absolute path of the original's, and would
    otherwise write its trials there."""
    url = (old_config.get("storage") or {}).get("url")
    if isinstance(url, str) and url.startswith("sqlite:") and (run_dir / STUDY_FILE).is_file():
        return None
    return url


def _check_budget_range(cfg: SearchConfig, problem: Problem, hooks: Hooks) -> None:
    """Before any training: a budget below the space's fastest candidate is refused where every
    candidate was priced and the prices cannot change before the trials (no trial could meet it;
    training a supernet to find that out costs minutes); otherwise one warning line."""
    rng = problem.latency_range()
    if rng.feasible(cfg.budget_ms):
        return
    entry = rng.to_config(cfg.budget_ms)
    if rng.exact and problem.range_final_after_check:
        raise BadInputError(str(below_fastest_message(cfg.budget_ms, entry, rng.target, when="refused")))
    line = f"warning: {below_fastest_message(cfg.budget_ms, entry, rng.target, when='before')}"
    if hooks.note:
        hooks.note(line)
    else:
        log.warning(line)


def _config(cfg: SearchConfig, problem: Problem, target: Any, storage_spec: str,
            warm: list[Any], prepared: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The run's config.yaml: the search's settings, then what the problem records."""
    return {
        "autocompress_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": target.name,
        "target_label": target.source_label,
        "target_estimated": target.estimated,
        "target_runtime": target.device.runtime,
        "budget_ms": cfg.budget_ms,
        "budget_on": cfg.budget_on,
        # the held-out error band the latency intervals come from ({}: none on record)
        "latency_error_band": bands_entry(target.device),
        # an estimated target calibrated on no network of this one's family says so beside every estimate
        "latency_family_note": problem.family_note(),
        "max_size_bytes": cfg.max_size_bytes,
        "accuracy_window_pp": (DEFAULT_ACCURACY_WINDOW_PP if cfg.accuracy_window_pp is None
                               else float(cfg.accuracy_window_pp)),  # fmt: skip
        "objectives": dict(zip(METRICS, DIRECTIONS)),
        "sampler": cfg.sampler,
        "seed": cfg.seed,
        "trials": cfg.trials,
        "storage": describe_storage(storage_spec),
        "fidelity": {"mode": cfg.fidelity, **({"eta": cfg.eta} if cfg.fidelity == "halving" else {})},
        "backend": {"name": cfg.backend, "workers": cfg.workers,
                    **({"address": cfg.address} if cfg.address else {})},  # fmt: skip
        **({"warm_start": {"run": str(cfg.warm_start), "candidates": len(warm)}} if cfg.warm_start else {}),
        **problem.config_entries(),
        **prepared,
        # which budgets bind: report, CLI and explorer say so when this one excludes nothing
        "latency_range": problem.latency_range().to_config(cfg.budget_ms),
    }
