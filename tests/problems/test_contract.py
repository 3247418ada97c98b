"""The contract every problem passes (the supernet and a user's model alike): what the search,
the Ray workers, export, report and explorer ask of a problem."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
import torch

from autocompress.problems import build_problem, describer, from_recipe
from tests import byom_models as bm

MODELS = str(Path("tests") / "byom_models.py")


@pytest.fixture(scope="module", params=["supernet", "model"])
def problem(request, fashion_dir, tmp_path_factory):
    if request.param == "supernet":
        return build_problem(target="cpu", space="tiny", subset=300, seed=0)
    weights = tmp_path_factory.mktemp("w") / "resnet_tiny.pt"
    torch.manual_seed(0)
    torch.save(bm.resnet_tiny().state_dict(), weights)
    return build_problem(target="cpu", model=f"{MODELS}:resnet_tiny", weights=weights, subset=300, seed=0)


def test_a_sampled_candidate_round_trips_through_its_flat_columns(problem) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(3):
        cand = problem.sample(study.ask())
        flat = cand.to_flat()
        assert set(flat) == set(problem.dimensions())  # one trials-table column per choice
        assert problem.candidate(flat) == cand
        assert problem.contains(cand)
        assert all(flat[k] in v for k, v in problem.dimensions().items())
    assert problem.contains(problem.largest()) and problem.contains(problem.smallest())
    assert problem.largest() != problem.smallest()


def test_the_largest_candidate_is_predicted_slower_than_the_smallest(problem) -> None:
    problem.check()  # prices both ends on the target (a user's model: every layer priced)
    big, small = problem.predict(problem.largest()), problem.predict(problem.smallest())
    assert big.latency_ms > 0 and small.latency_ms > 0
    assert len(big.breakdown) > 0


def test_a_run_config_alone_describes_candidates_like_the_problem(problem) -> None:
    config = {**problem.config_entries(), "target": problem.target.name}
    runs = describer(config)
    assert runs.kind == problem.kind
    cand = problem.smallest()
    row = {**cand.to_flat(), "number": 4, "val_accuracy": 0.5}  # a trials-table row: more than choices
    assert runs.row_candidate(row) == cand
    about = runs.describe(cand)
    assert about == problem.describe(cand)
    assert about["summary"] == cand.describe() and len(about["input_shape"]) == 3
    assert set(about["kd"]) == {"alpha", "temperature", "finetune_steps"} and about["parts"]


def test_the_recipe_rebuilds_the_same_problem_in_another_process(problem) -> None:
    recipe = pickle.loads(pickle.dumps(problem.recipe()))  # what Ray ships to a worker
    again = from_recipe(recipe)
    assert type(again) is type(problem)
    assert again.fingerprint() == problem.fingerprint()
    assert again.dimensions() == problem.dimensions()
    # --device travels as the user gave it; each worker resolves it on its own machine
    assert recipe["device"] == problem.device_spec == "auto" and again.device == problem.device


def test_the_latency_range_holds_the_largest_and_smallest_candidates(problem) -> None:
    problem.check()
    rng = problem.latency_range()  # which budgets bind: recorded in config.yaml at search start
    assert 0 < rng.min_ms < rng.max_ms
    assert rng.target == problem.target.name and rng.estimated == problem.target.estimated
    for cand in (problem.largest(), problem.smallest()):
        assert rng.min_ms - 1e-9 <= problem.predict(cand).latency_ms <= rng.max_ms + 1e-9


def test_finalize_trains_deploys_and_resumes_from_its_checkpoint(problem, tmp_path) -> None:
    """Both problems finalize the same way: the long fine-tune by the space's schedule, then the
    deploy step into models/final_NNNN.onnx; a second call finds the last epoch's checkpoint,
    trains nothing more and deploys the same network (same accuracy)."""
    models = tmp_path / "models"
    models.mkdir()
    problem.prepare(models)
    spec = problem.finalize_spec()
    ckpt = tmp_path / "trial_0003.pt"
    steps: list[tuple[int, int]] = []
    result, resumed = problem.finalize(problem.smallest(), 3, checkpoint=ckpt, on_step=lambda d, t: steps.append((d, t)))
    assert resumed == 0 and steps and steps[-1][0] == steps[-1][1]  # every step of the schedule ran
    assert result.model_path == str(models / "final_0003.onnx") and (models / "final_0003.onnx").is_file()
    assert 0 < result.val_accuracy <= 1 and result.size_bytes == (models / "final_0003.onnx").stat().st_size
    assert torch.load(ckpt, weights_only=True)["epoch"] == spec.epochs
    again, resumed = problem.finalize(problem.smallest(), 3, checkpoint=ckpt)
    assert resumed == spec.epochs and again.val_accuracy == result.val_accuracy
