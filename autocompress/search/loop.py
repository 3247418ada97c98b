"""The local backend: Optuna's ask/tell loop in this process, one trial at a time."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from autocompress._io import storage_error
from autocompress.exceptions import AutoCompressError, CompressionUnavailableError, TargetError
from autocompress.problems import Problem
from autocompress.results import write_results
from autocompress.search.config import METRICS, Hooks, SearchConfig
from autocompress.search.storage import (
    WORKER_ATTR,
    fail_and_requeue,
    fail_stale,
    heartbeat,
    live_foreign_trials,
    worker_id,
)
from autocompress.search.trial import constraint_values, find_twin, report_trial, score_candidate

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5


def optimize(study: optuna.Study, problem: Problem, cfg: SearchConfig, config: dict[str, Any],
             run_dir: Path, hooks: Hooks) -> int:  # fmt: skip
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
        cand = problem.sample(trial)
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
                    result = score_candidate(problem, cand, trial.number, study=study, cfg=cfg)
        except KeyboardInterrupt:
            fail_and_requeue(study, trial)
            write_results(run_dir, study, config)
            raise
        except (CompressionUnavailableError, TargetError):
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
