"""``--backend ray``: every trial is a Ray Tune trial, for any problem.

Ray Tune's ``OptunaSearch`` is the search algorithm, over the same Optuna study and storage
as the local loop (same sampler, same enqueued warm-start/seed/retry trials); the trainable
runs the same evaluation (``trial.score_candidate``) in a Ray worker. The driver prepared the
problem before Tune starts (trained or loaded the supernet, exported the user's baseline);
workers rebuild it from its ``recipe()`` once per worker process and ``attach`` to what the
driver prepared (a supernet is loaded from the cache, never retrained).

The budget constraint, the trial's candidate and its result are written to the Optuna trial by
the driver-side searcher before ``study.tell`` (``OptunaSearch`` alone reports objective values
only).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from autocompress.device import resolve_device
from autocompress.exceptions import AutoCompressError, RuntimeUnavailableError
from autocompress.problems import Problem, from_recipe
from autocompress.results import STUDY_NAME, write_results
from autocompress.search.config import DIRECTIONS, METRICS, SearchConfig
from autocompress.search.storage import WORKER_ATTR, open_storage, worker_id
from autocompress.search.trial import constraint_values, find_twin, report_trial, score_candidate

_WORKER_CACHE: dict[str, Any] = {}


def _import_ray() -> Any:
    try:
        import ray
        from ray import tune  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401
    except ImportError:
        raise RuntimeUnavailableError(
            "--backend ray needs Ray Tune: pip install 'autocompress[ray]'"
        ) from None
    return ray


def start_ray(workers: int, address: str | None) -> bool:
    """Connect to ``address``, or start a local Ray for ``workers`` CPUs (loopback, no dashboard).

    Returns whether this call started Ray (and so should shut it down).
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in ("AUTOCOMPRESS_CACHE", "PYTHONWARNINGS") if k in os.environ}
    common = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "configure_logging": False}
    if address:
        check_reachable(address)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1", **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise RuntimeUnavailableError(f"cannot start or reach {where}: {str(exc).splitlines()[0]}") from None
    return True


REACH_TIMEOUT_S = 10.0  # an --address that does not answer a TCP connection within this is refused


def check_reachable(address: str) -> None:
    """Refuse an ``--address HOST:PORT`` nothing answers on: Ray itself waits for it without end."""
    if "://" in address or ":" not in address:  # ray://..., auto: Ray's own forms, its own errors
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S):
            pass
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise RuntimeUnavailableError(f"cannot reach the Ray cluster at --address {address}: {why}; start it with "
                                      "'ray start --head' there, or leave --address out for a local Ray") from None


def run_ray(study: optuna.Study, storage_spec: str, problem: Problem, cfg: Any, config: dict[str, Any],
            run_dir: Path, hooks: Any) -> int:  # fmt: skip
    """Run the remaining trials as Ray Tune trials; returns how many this call completed."""
    ray = _import_ray()
    from ray import tune

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    remaining = cfg.trials - done
    if hooks.search_start:
        hooks.search_start(done, cfg.trials)
    if remaining <= 0:
        return 0
    started = start_ray(cfg.workers, cfg.address)
    counter = {"new": 0}

    def define_space(trial: Any) -> dict[str, Any]:
        cand = problem.sample(trial)
        return {**cand.to_flat(), "_description": cand.describe()}

    searcher = _study_search_class()(
        driver={"problem": problem, "cfg": cfg, "study": study, "config": config, "run_dir": run_dir,
                "hooks": hooks, "counter": counter},  # fmt: skip
        space=define_space,
        metric=list(METRICS),
        mode=["max" if d == "maximize" else "min" for d in DIRECTIONS],
        sampler=study.sampler,  # seeded by run_search, as for the local loop
        study_name=STUDY_NAME,
        storage=study._storage,
    )
    ctx = {
        "storage": storage_spec,
        "recipe": problem.recipe(),
        "target": cfg.target,
        "models_dir": str((run_dir / "models").resolve()),
        "cfg": {k: getattr(cfg, k) for k in ("budget_ms", "max_size_bytes", "fidelity", "eta", "budget_on")},
    }
    # Ray hides the GPUs from a trial that asks for none: with training on CUDA, the workers
    # share the GPU in equal parts (the recipe's --device is resolved again in each worker)
    resources = {"cpu": 1, **({"gpu": 1.0 / cfg.workers} if resolve_device(cfg.device).type == "cuda" else {})}
    scratch = tempfile.mkdtemp(prefix="autocompress-ray-")
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(ray_trial, ctx=ctx), resources),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=remaining,
                max_concurrent_trials=cfg.workers,
                time_budget_s=cfg.timeout_s,
                # one worker process per CPU for the whole search: its data, supernet and
                # evaluator are loaded once (_worker_state), not once per trial
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="autocompress",
                storage_path=scratch,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        # Ctrl-C stops the search as it stops a local one (exit 130, "interrupted"), not Tune's
        # graceful stop, which returned as if the run had finished and offered Tuner.restore
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        tuner.fit()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if started:
            ray.shutdown()
    if counter["new"] == 0 and counter.get("failed"):
        raise AutoCompressError(
            f"all {counter['failed']} Ray trial(s) failed; see the error column of {run_dir / 'trials.parquet'} "
            "and the Ray workers' logs"
        )
    return counter["new"]


def _study_search_class() -> type:
    from ray.tune.search.optuna import OptunaSearch

    class StudySearch(OptunaSearch):
        """OptunaSearch that also records the candidate, worker, result and budget constraint on
        each Optuna trial (before ``study.tell``) and refreshes the run directory after each."""

        def __init__(self, *, driver: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._driver = driver

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            params = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr(WORKER_ATTR, worker_id())
            ot_trial.set_user_attr("candidate", {k: params[k] for k in self._driver["problem"].dimensions()})
            ot_trial.set_user_attr("description", params.pop("_description"))
            return {**params, "_trial_number": ot_trial.number}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            d = self._driver
            ot_trial = self._ot_trials.get(trial_id)
            ok = ot_trial is not None and result is not None and "result_json" in result and not error
            if ok:
                res = json.loads(result["result_json"])
                ot_trial.set_user_attr("result", res)
                if result.get("duplicate_of", -1) >= 0:
                    ot_trial.set_user_attr("duplicate_of", int(result["duplicate_of"]))
                for name, value in constraint_values(res, d["cfg"]).items():
                    ot_trial.set_constraint(name, value)
            elif ot_trial is not None:
                ot_trial.set_user_attr("error", "the Ray trial failed (see the Ray worker's log)")
                d["counter"]["failed"] = d["counter"].get("failed", 0) + 1
            super().on_trial_complete(trial_id, result if ok else None, error=not ok)
            study = d["study"]
            write_results(d["run_dir"], study, d["config"])
            if ok:
                d["counter"]["new"] += 1
                report_trial(study, study._storage.get_trial(ot_trial._trial_id), d["hooks"])

        # The study in its storage is this search's checkpoint (``--resume``), not Tune's
        # experiment state: Tune pickles its searcher into that state, so only what pickles
        # without the driver (storage connections, the progress display) goes there.
        def save(self, checkpoint_path: str) -> None:
            raise NotImplementedError

        def __getstate__(self) -> dict[str, Any]:
            return {"_metric": self._metric, "_mode": self._mode}

    return StudySearch


def _worker_state(ctx: dict[str, Any]) -> tuple[Problem, optuna.Study]:
    """The problem and study of this worker process, built once (``attach``: what the driver
    prepared is reused, a supernet from the cache)."""
    key = json.dumps(ctx, sort_keys=True, default=str)
    if key not in _WORKER_CACHE:
        import torch

        torch.set_num_threads(1)  # one CPU per Ray trial
        problem = from_recipe(ctx["recipe"])
        problem.attach(Path(ctx["models_dir"]))
        study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(ctx["storage"]))
        _WORKER_CACHE[key] = (problem, study)
    return _WORKER_CACHE[key]


def ray_trial(config: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """The Ray Tune trainable: evaluate one candidate, return its objectives and result."""
    problem, study = _worker_state(ctx)
    number = int(config["_trial_number"])
    flat = {k: config[k] for k in problem.dimensions()}
    cand = problem.candidate(flat)
    twin = find_twin(study, flat, number)
    if twin is not None:
        result, dup = dict(twin.user_attrs["result"]), twin.number
    else:
        cfg = SearchConfig(target=ctx["target"], **ctx["cfg"])
        result, dup = score_candidate(problem, cand, number, study=study, cfg=cfg), -1
    return {
        "val_accuracy": result["val_accuracy"],
        "latency_ms": result["latency_ms"],
        "size_bytes": result["size_bytes"],
        "duplicate_of": dup,
        "result_json": json.dumps(result),
    }
