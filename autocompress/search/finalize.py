"""The finalize phase: after a search, the chosen candidates and the teacher get a long distillation fine-tune, then the search's deploy step.

Every candidate of a search inherits weights trained for a few shared epochs and gets a short
fine-tune; the gap to its teacher is then mostly a training-budget gap. Finalize closes it for
the candidates a person would deploy:

1. **Which**: the ``top`` K feasible candidates spread along the search-time accuracy-latency
   front (``results.mark_fronts``, far-below points excluded), fastest to most accurate: with
   ``n`` front points and K of them wanted, the points at ranks ``round(i (n-1) / (K-1))`` by
   latency, i.e. both ends of the front and evenly between; or the trials asked for by number.
   The teacher (the largest network, the seeded ``largest`` trial) always gets the same training,
   so its finalized accuracy is the fair reference beside theirs.
2. **How**: ``Problem.finalize`` trains the candidate's network (sliced and pruned as the search
   built it) by the space's ``finalize:`` schedule with distillation from the largest network,
   then runs the same deploy step and measurement as a trial (``compress.deploy``: PTQ, QAT if
   PTQ loses too much, keep the better), writing ``models/final_NNNN.onnx``.
3. **Never worse**: the finalized file is deployed (``finalized``) only when its validation
   accuracy beats the search's file; otherwise the search's stays (``kept``).

State lives in the run directory: ``finalize/trial_NNNN.json`` per candidate (written
atomically: ``running``, then ``finalized`` or ``kept`` with both sets of numbers) and
``finalize/trial_NNNN.pt``, the training's checkpoint after every epoch. A rerun (``autocompress
finalize RUN`` or ``search --resume``) skips finished candidates and resumes an interrupted one
from its last epoch; ``kill -9`` at any moment loses at most one epoch and leaves no half file.
After each candidate the trials table, Pareto set, plot and report are rewritten with the
deployed numbers (``results.merge_finalized``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from autocompress._io import atomic_write_text, ensure_writable_dir
from autocompress.exceptions import BadInputError, RunDirError
from autocompress.problems import Problem, ProblemHooks, build_problem
from autocompress.results import (
    DEPLOYED_COLUMNS,
    FINALIZE_DIR,
    accuracy_window,
    finalize_states,
    load_run,
    load_trials,
    mark_fronts,
    pareto_frame,
    write_config,
    write_trials,
)

DONE_STATES = ("finalized", "kept")


@dataclass
class FinalizeHooks:
    """Progress callbacks (all optional): the plan, each candidate's steps, each result."""

    start: Callable[[list[tuple[int, str]], int], None] | None = None  # (plan, already done)
    candidate: Callable[[int, str], None] | None = None  # (number, role) starting
    step: Callable[[int, int, int], None] | None = None  # (number, done steps, total steps)
    done: Callable[[dict[str, Any]], None] | None = None  # a candidate's state once finished
    train_start: Callable[[bool], None] | None = None  # supernet training (finalize of a run)
    train_step: Callable[[int, int, float], None] | None = None


@dataclass
class FinalizeOutcome:
    run_dir: Path
    config: dict[str, Any]
    trials: pd.DataFrame
    pareto: pd.DataFrame
    plan: list[tuple[int, str]]
    skipped: list[int] = field(default_factory=list)  # finished before this call
    states: dict[int, dict[str, Any]] = field(default_factory=dict)


# ---------------------------------------------------------------------- choosing


def search_view(trials: pd.DataFrame, window_pp: float) -> pd.DataFrame:
    """The trials table with the search's numbers and flags (as before any finalize)."""
    if "search_val_accuracy" not in trials:
        return mark_fronts(trials, window_pp)
    out = trials.copy()
    for col in DEPLOYED_COLUMNS:
        if f"search_{col}" in out:
            out[col] = out[f"search_{col}"]
    out["pareto"] = out["search_pareto"]
    return mark_fronts(out, window_pp)


def teacher_number(trials: pd.DataFrame) -> int | None:
    """The completed trial of the largest network (the search seeds it first), if any."""
    if "seeded" not in trials:
        return None
    rows = trials[(trials["seeded"] == "largest") & (trials["state"] == "COMPLETE")]
    return int(rows.iloc[0]["number"]) if not rows.empty else None


def pick(trials: pd.DataFrame, top: int, window_pp: float) -> list[int]:
    """``top`` trial numbers spread along the search-time accuracy-latency front (fastest to most
    accurate; the teacher excluded: it is finalized anyway)."""
    view = search_view(trials, window_pp)
    if "front" not in view or top <= 0:
        return []
    teacher = teacher_number(trials)
    front = view[view["front"].fillna(False).astype(bool) & (view["number"] != teacher)]
    front = front.sort_values(["latency_ms", "val_accuracy"], ascending=[True, False])
    numbers = [int(n) for n in front["number"]]
    if len(numbers) <= top:
        return numbers
    if top == 1:
        return [numbers[-1]]  # the most accurate
    ranks = sorted({round(i * (len(numbers) - 1) / (top - 1)) for i in range(top)})
    return [numbers[r] for r in ranks]


def plan_for(trials: pd.DataFrame, *, top: int, numbers: list[int] | None, window_pp: float) -> list[tuple[int, str]]:
    """(trial number, role) to finalize: the teacher first (when the run has it), then the
    candidates asked for (``numbers``) or picked (``top``).

    Raises:
        BadInputError: a number that is not a completed trial of the run.
    """
    if numbers is not None:
        done = trials[trials["state"] == "COMPLETE"]
        have = {int(n) for n in done["number"]}
        missing = [n for n in numbers if n not in have]
        if missing:
            all_numbers = trials["number"] if "number" in trials else pd.Series([], dtype=int)
            span = f"trials {int(all_numbers.min())}-{int(all_numbers.max())}" if len(all_numbers) else "no trials"
            raise BadInputError(
                f"the run has no completed trial {', '.join(str(n) for n in missing)} (it has {span}, "
                f"{len(have)} completed); nothing was finalized"
            )
        chosen = list(dict.fromkeys(numbers))
    else:
        chosen = pick(trials, top, window_pp)
    teacher = teacher_number(trials)
    plan = [(teacher, "teacher")] if teacher is not None else []
    return plan + [(n, "candidate") for n in chosen if n != teacher]


# ---------------------------------------------------------------------- running


def finalize_candidates(problem: Problem, run_dir: Path, config: dict[str, Any], *, top: int | None = None,
                        numbers: list[int] | None = None, hooks: FinalizeHooks | None = None) -> FinalizeOutcome:  # fmt: skip
    """Finalize a run whose problem is prepared (the search's, or one rebuilt by ``finalize_run``).

    ``top`` None: the space's ``finalize.top``. Writes the states, checkpoints and final files,
    ``config.yaml``'s ``finalize`` entry and, after every candidate, the results.
    """
    hooks = hooks or FinalizeHooks()
    spec = problem.finalize_spec()
    before = config.get("finalize") or {}
    if top is None and numbers is None and before.get("state") == "running":
        # a rerun naming nothing continues an interrupted finalize as it was asked for
        top, numbers = before.get("top"), before.get("requested")
    top = spec.top if top is None else top
    window = accuracy_window(config)
    fin_dir = run_dir / FINALIZE_DIR
    fin_dir.mkdir(exist_ok=True)
    _remove_scratch(run_dir)
    trials = load_trials(run_dir)
    plan = plan_for(trials, top=top, numbers=numbers, window_pp=window)
    schedule = spec.model_dump(mode="json", exclude={"top"})
    text = spec.describe("your original model" if getattr(problem, "kind", "") == "model" else "the largest network")
    states = finalize_states(run_dir)
    done = set(trials.loc[trials["state"] == "COMPLETE", "number"].astype(int)) if "number" in trials else set()
    planned = {n for n, _ in plan}
    # a candidate an interrupted finalize left in training is finished too, whatever is asked now
    plan += [(n, str(st.get("role") or "candidate")) for n, st in sorted(states.items())
             if st.get("state") == "running" and n not in planned and n in done]
    skipped = [n for n, _ in plan if _finished(states.get(n), schedule)]
    t_start = time.perf_counter()
    config = {**config, "finalize": {
        "top": top, "requested": numbers, "plan": [{"trial": n, "role": r} for n, r in plan],
        "schedule": schedule, "schedule_text": text, "state": "running"}}  # fmt: skip
    write_config(run_dir, config)
    if hooks.start:
        hooks.start(plan, len(skipped))
    rows = trials.set_index("number")
    for number, role in plan:
        if number in skipped:
            continue
        state = _finalize_one(problem, run_dir, rows.loc[number], number, role, schedule, text,
                              states.get(number), hooks)  # fmt: skip
        states[number] = state
        write_trials(run_dir, load_trials(run_dir), config)
        if hooks.done:
            hooks.done(state)
    config["finalize"]["state"] = "done"
    config["finalize"]["seconds"] = round(time.perf_counter() - t_start, 1)
    config["finalize"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_config(run_dir, config)
    trials = write_trials(run_dir, load_trials(run_dir), config)
    return FinalizeOutcome(run_dir, config, trials, pareto_frame(trials, window), plan, skipped,
                           {n: states[n] for n, _ in plan if n in states})  # fmt: skip


def _finished(state: dict[str, Any] | None, schedule: dict[str, Any]) -> bool:
    return bool(state) and state.get("state") in DONE_STATES and state.get("schedule") == schedule


def _finalize_one(problem: Problem, run_dir: Path, row: pd.Series, number: int, role: str,
                  schedule: dict[str, Any], schedule_text: str, old: dict[str, Any] | None,
                  hooks: FinalizeHooks) -> dict[str, Any]:  # fmt: skip
    """Train, deploy and measure one candidate; its state file says where it stands throughout."""
    fin_dir = run_dir / FINALIZE_DIR
    state_path = fin_dir / f"trial_{number:04d}.json"
    ckpt = fin_dir / f"trial_{number:04d}.pt"
    if old is not None and old.get("schedule") != schedule:  # another schedule: start over
        with contextlib.suppress(OSError):
            ckpt.unlink()
    search = {c: _plain(row.get(f"search_{c}", row.get(c))) for c in ("val_accuracy", "test_accuracy",
                                                                       "size_bytes", "model_path")}  # fmt: skip
    started = datetime.now(UTC).isoformat(timespec="seconds")
    state: dict[str, Any] = {"number": number, "role": role, "state": "running", "schedule": schedule,
                             "schedule_text": schedule_text, "started_at": started, "search": search}  # fmt: skip
    _write_state(state_path, state)
    if hooks.candidate:
        hooks.candidate(number, role)
    t0 = time.perf_counter()
    cand = problem.row_candidate(row)
    result, resumed = problem.finalize(
        cand, number, checkpoint=ckpt,
        on_step=(lambda d, t: hooks.step(number, d, t)) if hooks.step else None,
    )  # fmt: skip
    better = result.val_accuracy > float(search["val_accuracy"])
    state.update(state="finalized" if better else "kept", resumed_from_epoch=resumed,
                 seconds=round(time.perf_counter() - t0, 1), result=result.to_dict(),
                 finalized_at=datetime.now(UTC).isoformat(timespec="seconds"))  # fmt: skip
    _write_state(state_path, state)
    with contextlib.suppress(OSError):
        ckpt.unlink()  # the state says it is done: the checkpoint is not needed any more
    return state


def _write_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(state, indent=2, default=_plain) + "\n")


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v


def _remove_scratch(run_dir: Path) -> None:
    """Temporary files a killed finalize left (every real file beside them is whole)."""
    for pattern in (f"{FINALIZE_DIR}/.*.tmp", "models/.final_*"):
        for path in run_dir.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()


# ---------------------------------------------------------------------- a finished run


def finalize_run(run_dir: Path, *, top: int | None = None, numbers: list[int] | None = None,
                 hooks: FinalizeHooks | None = None) -> FinalizeOutcome:  # fmt: skip
    """``autocompress finalize RUN``: rebuild the run's problem from its ``config.yaml`` (the
    supernet from the cache, the user's model from its file) and finalize.

    Raises:
        RunDirError: not a run directory, no trials table, or a space that changed since the search.
        BadInputError: ``top`` below 1, or trial numbers the run does not have.
    """
    hooks = hooks or FinalizeHooks()
    if top is not None and top < 1:
        raise BadInputError(f"--top must be at least 1; got {top}")
    config, trials = load_run(run_dir)
    ensure_writable_dir(run_dir, "run directory")  # before the supernet and the fine-tunes, not after
    if not plan_for(trials, top=top or 1, numbers=numbers, window_pp=accuracy_window(config)):
        raise RunDirError(f"nothing to finalize in {run_dir}: no completed teacher (trial of the largest network) "
                          "and no feasible candidate on the accuracy-latency front")  # fmt: skip
    problem = problem_of(config)
    problem.check()
    problem.prepare(run_dir / "models", ProblemHooks(train_start=hooks.train_start, train_step=hooks.train_step))
    return finalize_candidates(problem, run_dir, config, top=top, numbers=numbers, hooks=hooks)


def problem_of(config: dict[str, Any]) -> Problem:
    """The search-time problem of a run, from its config (checked to be the same space)."""
    ds = config.get("dataset") or {}
    common = {"target": str(config.get("target")), "dataset": ds.get("spec") or ds.get("name"),
              "subset": ds.get("subset"), "seed": int(config.get("seed", 0))}  # fmt: skip
    if config.get("kind") == "model":
        m = config.get("model") or {}
        shape = m.get("input_shape")
        problem = build_problem(model=m.get("spec"), weights=Path(m["weights"]) if m.get("weights") else None,
                                input_shape=",".join(str(d) for d in shape) if shape else None,
                                space=config.get("space_path"), **common)  # fmt: skip
    else:
        problem = build_problem(space=config.get("space_path"), **common)
    want = config.get("space_fingerprint")
    if want and problem.fingerprint() != want:
        raise RunDirError(
            f"the space or model of this run changed since its search ({config.get('space_path')}: fingerprint "
            f"{problem.fingerprint()}, the run's {want}); finalize needs the search's"
        )
    return problem
