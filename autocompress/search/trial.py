"""One trial, whichever backend runs it: the constraints, the fidelity, twin detection and progress."""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.trial import TrialState

from autocompress.exceptions import TargetError
from autocompress.hardware.interval import NO_BAND
from autocompress.problems import Problem
from autocompress.results import pareto_numbers
from autocompress.search.config import Hooks, SearchConfig
from autocompress.search.fidelity import Halving, evaluate_at_fidelity
from autocompress.search.storage import WORKER_ATTR, worker_alive


def constraint_values(result: dict[str, Any], cfg: SearchConfig) -> dict[str, float]:
    """The hard limits, as Optuna constraints (feasible when <= 0). With ``budget_on="upper"``
    the latency limit applies to the upper end of the prediction's interval.

    Raises:
        TargetError: ``budget_on="upper"`` and the result has no interval (its table records no
            held-out error band for the precision; ``run_search`` refuses that before any trial).
    """
    latency = result["latency_ms"]
    if cfg.budget_on == "upper":
        latency = result.get("latency_hi_ms")
        if latency is None:
            raise TargetError(f"--budget-on upper: no latency interval for this candidate ({NO_BAND})")
    out = {"latency": latency - cfg.budget_ms}
    if cfg.max_size_bytes is not None:
        out["size"] = result["size_bytes"] - cfg.max_size_bytes
    return out


def score_candidate(problem: Problem, cand: Any, number: int, *, study: optuna.Study,
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
        lambda c: problem.evaluate(c, number).to_dict(),
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


def report_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial, hooks: Hooks) -> None:
    """Tell the progress display about a finished trial."""
    if not hooks.trial_done:
        return
    result = frozen.user_attrs["result"]
    best = best_full_fidelity_accuracy(study)
    over = [k for k, v in frozen.constraints.items() if v > 0]  # the hard limits it breaks: latency, size
    info = {**result, "feasible": not over, "over": over,
            "description": frozen.user_attrs.get("description", ""),
            "duplicate_of": frozen.user_attrs.get("duplicate_of")}  # fmt: skip
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    hooks.trial_done(done, frozen.number, best, info)


def best_full_fidelity_accuracy(study: optuna.Study) -> float | None:
    numbers = pareto_numbers(study)
    return max((t.values[0] for t in study.get_trials(deepcopy=False) if t.number in numbers), default=None)
