"""A compression search over a user's model, on the shared Optuna machinery of
:mod:`autocompress.search` (study, budget constraint, ask/tell loop, run directory)."""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna

from autocompress import __version__
from autocompress.byom.evaluate import ModelEvaluator
from autocompress.byom.model import load_user_model, parse_input_shape
from autocompress.byom.space import derive_space, load_model_space_spec
from autocompress.data import load_dataset
from autocompress.exceptions import InfeasibleBudgetError, ModelError
from autocompress.hardware.targets import get_target
from autocompress.results import (
    STUDY_NAME,
    pareto_frame,
    read_config,
    storage_url,
    write_config,
    write_results,
)
from autocompress.runtime import model_size, ort_accuracy
from autocompress.units import format_ms


def run_model_search(cfg: Any, hooks: Any) -> Any:
    """Run (or resume) a compression search over ``cfg.model`` with ``cfg.weights``.

    Raises:
        ModelError: the model, weights or data do not fit together (before any training).
        UnpricedLayersError: the target's tables cannot price the model's layers.
        InfeasibleBudgetError: trials completed but none met the budget (results kept).
    """
    from autocompress.search import (
        DIRECTIONS,
        METRICS,
        SearchOutcome,
        _optimize,
        _prepare_run_dir,
        make_sampler,
    )

    if cfg.weights is None:
        raise ModelError("--model needs --weights (a state dict saved with torch.save(model.state_dict(), path))")
    target = get_target(cfg.target)
    _ = target.table
    data = load_dataset(cfg.dataset or "fashion-mnist", data_dir=cfg.data_dir, subset=cfg.subset, seed=cfg.seed)
    shape = parse_input_shape(cfg.input_shape) if cfg.input_shape else None
    user = load_user_model(cfg.model, cfg.weights, input_shape=shape,
                           default_shape=(data.channels, data.image_size, data.image_size))  # fmt: skip
    if user.num_outputs != data.num_classes:
        raise ModelError(
            f"data set {data.name} has {data.num_classes} classes but {user.function}() outputs "
            f"{user.num_outputs} logits; pass the data set the model was trained on"
        )
    if user.input_shape[0] != data.channels:
        raise ModelError(
            f"data set {data.name} has {data.channels}-channel images but the model takes "
            f"{user.input_shape[0]} channels (--input-shape)"
        )
    spec = load_model_space_spec(cfg.space)
    name = Path(user.source).stem if user.source.endswith(".py") else user.source
    space = derive_space(user.module, user_example(user), spec, precisions=list(target.device.precisions),
                         name=f"{name}:{user.function}", fn_name=f"{user.function}()")  # fmt: skip
    space_fp = f"{space.fingerprint(user.weights_sha256)}-{space.size()}"
    run_dir = _prepare_run_dir(cfg, target.name, space_fp)
    evaluator = ModelEvaluator(user=user, space=space, data=data, target=target, models_dir=run_dir / "models",
                               seed=cfg.seed)  # fmt: skip
    # every layer priced before any training: the unpruned model and the most compressed one
    baseline = evaluator.predict(space.largest())
    evaluator.predict(space.smallest())
    (run_dir / "models").mkdir(exist_ok=True)
    original = run_dir / "models" / "original.onnx"
    if not original.is_file():
        evaluator.export(user.module, original)
    x_val, y_val = data.split("val", evaluator.resolution)
    x_test, y_test = data.split("test", evaluator.resolution)

    config: dict[str, Any] = {
        "autocompress_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": "model",
        "target": target.name,
        "target_label": target.source_label,
        "target_estimated": target.estimated,
        "budget_ms": cfg.budget_ms,
        "max_size_bytes": cfg.max_size_bytes,
        "objectives": dict(zip(METRICS, DIRECTIONS)),
        "sampler": cfg.sampler,
        "seed": cfg.seed,
        "trials": cfg.trials,
        "space_path": str(cfg.space) if cfg.space else None,
        "space_fingerprint": space_fp,
        "space": space.to_dict(),
        "dataset": {**data.describe(), "spec": cfg.dataset or "fashion-mnist", "subset": cfg.subset},
        "model": user.describe(),
        "baseline": {
            "val_accuracy": ort_accuracy(original, x_val, y_val),
            "test_accuracy": ort_accuracy(original, x_test, y_test),
            "latency_ms": baseline.latency_ms,
            "energy_mj": baseline.energy_mj,
            "size_bytes": model_size(original),
            "model_path": str(original),
        },
    }
    if cfg.resume:
        old = read_config(run_dir)
        config["created"] = old.get("created", config["created"])
        config["resumed"] = [*old.get("resumed", []), datetime.now(UTC).isoformat(timespec="seconds")]
    write_config(run_dir, config)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage_url(run_dir), directions=list(DIRECTIONS),
                                load_if_exists=True)  # fmt: skip
    study.set_metric_names(list(METRICS))
    study.sampler = make_sampler(cfg.sampler, cfg.seed + len(study.trials))
    if cfg.resume:
        from autocompress.storage import requeue_interrupted

        requeue_interrupted(study)
    elif not study.trials:
        sampled = {k for k, v in space.dimensions().items() if len(v) > 1}
        for cand, role in ((space.largest(), "largest"), (space.smallest(), "smallest")):
            params = {k: v for k, v in cand.to_flat().items() if k in sampled}
            study.enqueue_trial(params, user_attrs={"seeded": role})
    t0 = time.perf_counter()
    new = _optimize(study, space, evaluator, cfg, config, run_dir, hooks)
    trials = write_results(run_dir, study, config)
    front = pareto_frame(trials)
    outcome = SearchOutcome(run_dir, config, trials, front, new, False, 0.0)
    outcome.notes.append(f"search took {time.perf_counter() - t0:.0f} s")
    done = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    if not done.empty and front.empty:
        raise InfeasibleBudgetError(
            f"no candidate met the budget of {format_ms(cfg.budget_ms)} on {target.name}; the fastest "
            f"of {len(done)} took {format_ms(float(done['latency_ms'].min()))} (results kept in {run_dir})"
        )
    return outcome


def user_example(user: Any):  # noqa: ANN201
    import torch

    return torch.zeros(2, *user.input_shape)


def model_layer_keys(user: Any, space: Any, precisions: list[str]) -> list[Any]:
    """Every layer key the space's uniform pruning ratios produce (for ``profile --layers``)."""
    from autocompress.byom.space import prune_model
    from autocompress.hardware.onnx_layers import extract_layers

    ratios = sorted({r for k, v in space.dimensions().items() if k.startswith("prune.") for r in v})
    keys: dict[Any, None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in ratios or [0.0]:
            model = prune_model(user.module, space, {g.name: r for g in space.groups}, user_example(user))
            path = Path(tmp) / f"r{r}.onnx"
            from autocompress.runtime import export_onnx

            export_onnx(model, path, channels=user.input_shape[0], resolution=user.input_shape[1])
            layers, unknown = extract_layers(path)
            if unknown:
                raise ModelError(f"the layer tables cannot price {'; '.join(unknown[:8])} (no profiler for these ops)")
            for layer in layers:
                for p in precisions:
                    keys.setdefault(replace(layer.key, precision=p), None)
    return list(keys)
