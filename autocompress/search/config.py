"""What one search is asked to do (``SearchConfig``), what it returns, and the checks on its options."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd

from autocompress.exceptions import BadInputError, RunDirError, RuntimeUnavailableError
from autocompress.search.fidelity import FIDELITIES

if TYPE_CHECKING:
    from autocompress.search.finalize import FinalizeHooks

DIRECTIONS = ("maximize", "minimize", "minimize")
METRICS = ("val_accuracy", "latency_ms", "size_bytes")
SAMPLERS = ("tpe", "nsga2", "gp", "random")
BACKENDS = ("local", "ray")
BUDGET_ON = ("point", "upper")
SEED_MAX = 2**32 - 1  # numpy's and Optuna's samplers take seeds in [0, 2**32 - 1]


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
    fidelity: str = "full"  # full | halving (see search/fidelity.py)
    eta: int = 3
    # options the command left out (their defaults above): a --resume takes the run's own instead
    defaulted: frozenset[str] = frozenset()
    warm_start: Path | None = None
    backend: str = "local"  # local | ray
    workers: int = 1
    address: str | None = None
    # the user-model problem: FILE.py:FUNCTION or package.module:FUNCTION (None: our supernet)
    model: str | None = None
    weights: Path | None = None
    input_shape: str | None = None
    # Pareto points more than this many pp of validation accuracy below the best are listed apart
    # in the report and the CLI (None: the resumed run's recorded window, else results' default)
    accuracy_window_pp: float | None = None
    # where training runs: auto (a CUDA GPU when torch sees one), cpu or cuda; not part of the
    # study's identity, so a run can be resumed on another machine
    device: str = "auto"
    # the hard latency constraint on the point prediction, or on the upper end of its interval
    # (the table's held-out error band: hardware/interval.py)
    budget_on: str = "point"
    # the finalize phase after the search: how many candidates (None: the space's finalize.top; 0: off)
    finalize: int | None = None
    # a measured table from another machine: re-calibrate it here before the first trial
    recalibrate: bool = True


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
    layers_profile: Callable[[int, int], None] | None = None  # (done, total): layers profiled at search start
    finalize: FinalizeHooks | None = None  # the finalize phase after the search
    host_fit: Callable[[int, int], None] | None = None  # (done, total): table re-calibrated to this machine
    note: Callable[[str], None] | None = None  # one line the user should see before the trials


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


def check_device(spec: str | None) -> None:
    """``--device`` names a device this machine has (``auto`` and ``cpu`` always do: those are
    checked without importing torch, so a typo elsewhere is refused in a fraction of a second).

    Raises:
        BadInputError: an unknown name, or ``cuda`` on a machine without a usable GPU.
    """
    if (spec or "auto").strip().lower() in ("auto", "cpu"):
        return
    from autocompress.device import resolve_device

    resolve_device(spec)


def check_options(cfg: SearchConfig) -> None:
    """Every option's rule, checked before anything is loaded or written.

    Raises:
        BadInputError: an option out of range, or one the chosen problem cannot honour.
    """
    if cfg.trials < 1:
        raise BadInputError(f"--trials must be at least 1; got {cfg.trials}")
    if cfg.timeout_s is not None and not (cfg.timeout_s > 0 and math.isfinite(cfg.timeout_s)):
        raise BadInputError(f"--timeout must be a positive number of seconds; got {cfg.timeout_s}")
    if not 0 <= cfg.seed <= SEED_MAX:
        raise BadInputError(f"--seed must be within [0, 2**32 - 1]; got {cfg.seed}")
    if cfg.sampler not in SAMPLERS:
        raise BadInputError(f"unknown sampler {cfg.sampler!r}; use one of {', '.join(SAMPLERS)}")
    if cfg.fidelity not in FIDELITIES:
        raise BadInputError(f"--fidelity must be one of {', '.join(FIDELITIES)}; got {cfg.fidelity!r}")
    w = cfg.accuracy_window_pp
    if w is not None and not (math.isfinite(w) and 0 <= w <= 100):
        raise BadInputError(f"--accuracy-window must be between 0 and 100 percentage points; got {w:g}")
    if cfg.budget_on not in BUDGET_ON:
        raise BadInputError(f"--budget-on must be point or upper; got {cfg.budget_on!r}")
    if cfg.finalize is not None and cfg.finalize < 0:
        raise BadInputError(f"--finalize must be 0 (off) or more candidates; got {cfg.finalize}")
    if cfg.eta < 2:
        raise BadInputError(f"--eta must be at least 2; got {cfg.eta}")
    if cfg.backend not in BACKENDS:
        raise BadInputError(f"--backend must be local or ray; got {cfg.backend!r}")
    if cfg.workers < 1:
        raise BadInputError(f"--workers must be at least 1; got {cfg.workers}")
    if cfg.backend == "local" and (cfg.workers != 1 or cfg.address):
        raise BadInputError("--workers and --address need --backend ray (or start more processes with --resume)")
    if cfg.backend == "ray" and importlib.util.find_spec("ray") is None:  # not after the data and a supernet
        raise RuntimeUnavailableError("--backend ray needs Ray Tune: pip install 'autocompress[ray]'")
    if cfg.warm_start is not None and not cfg.warm_start.exists():
        raise RunDirError(f"cannot warm-start from {cfg.warm_start}: it does not exist")
    if cfg.warm_start is not None and not (cfg.warm_start / "pareto.csv").is_file():
        raise RunDirError(f"cannot warm-start from {cfg.warm_start}: it holds no pareto.csv")
    if cfg.model is None and (cfg.weights is not None or cfg.input_shape is not None):
        flag = "--weights" if cfg.weights is not None else "--input-shape"
        raise BadInputError(f"{flag} needs --model FILE.py:FUNCTION (the function that builds the network)")
    check_device(cfg.device)  # an unknown name, or cuda without a GPU: one line, before any work
    if cfg.model is not None and cfg.retrain_supernet:
        raise BadInputError("--retrain-supernet has no meaning with --model (a user's model has no supernet)")
