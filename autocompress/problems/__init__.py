"""Problems the search can solve: our supernet (``supernet``) and a user's model (``model``).

``build_problem`` makes the search-time problem from command-line choices, ``from_recipe``
rebuilds it in another process, and ``describer`` reads a finished run's config back into
something that can turn trials-table rows into candidates (export, report, explorer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autocompress.problems.base import Problem, ProblemHooks, RunDescriber, TrialResult

__all__ = ["Problem", "ProblemHooks", "RunDescriber", "TrialResult", "build_problem", "describer", "from_recipe"]

KINDS = ("supernet", "model")


def build_problem(*, target: str, space: str | Path | None = None, dataset: str | None = None,
                  data_dir: Path | None = None, subset: int | None = None, seed: int = 0,
                  model: str | None = None, weights: Path | None = None, input_shape: str | None = None,
                  retrain: bool = False, batch: int = 1, device: str = "auto",
                  recalibrate: bool = True) -> Problem:  # fmt: skip
    """The user-model problem when ``model`` is given, else the supernet problem.

    Raises:
        AutoCompressError: bad input (space, target, data, model, weights), before anything is written.
    """
    common = {"target": target, "space": space, "dataset": dataset, "data_dir": data_dir, "subset": subset,
              "seed": seed, "batch": batch, "device": device}  # fmt: skip
    if model is not None:
        from autocompress.problems.user_model.problem import UserModelProblem

        return UserModelProblem(model=model, weights=weights, input_shape=input_shape, **common)
    from autocompress.problems.supernet import SupernetProblem

    return SupernetProblem(retrain=retrain, recalibrate=recalibrate, **common)


def from_recipe(recipe: dict[str, Any]) -> Problem:
    """Rebuild a problem from ``Problem.recipe()`` (in a Ray worker)."""
    args = {k: v for k, v in recipe.items() if k != "kind"}
    for key in ("data_dir", "weights"):
        if args.get(key):
            args[key] = Path(args[key])
    if recipe["kind"] == "model":
        from autocompress.problems.user_model.problem import UserModelProblem

        return UserModelProblem(**args)
    from autocompress.problems.supernet import SupernetProblem

    return SupernetProblem(**args)


def describer(config: dict[str, Any]) -> RunDescriber:
    """What a run's config says about its candidates (no training, no user code imported).

    Raises:
        AutoCompressError: the config's space cannot be read.
    """
    if config.get("kind") == "model" or (config.get("space") or {}).get("kind") == "model":
        from autocompress.problems.user_model.problem import UserModelDescriber

        return UserModelDescriber(config)
    from autocompress.problems.supernet import SupernetDescriber

    return SupernetDescriber(config)
