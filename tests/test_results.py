from pathlib import Path

import pandas as pd
import pytest

from autocompress.results import render_report


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"number": 0, "state": "COMPLETE", "val_accuracy": 0.9, "test_accuracy": 0.89, "latency_ms": 0.8,
             "size_bytes": 120_000, "params": 30_000, "feasible": True, "pareto": True, "candidate": "r28 ..."},
            {"number": 1, "state": "COMPLETE", "val_accuracy": 0.91, "test_accuracy": 0.9, "latency_ms": 12.0,
             "size_bytes": 220_000, "params": 60_000, "feasible": False, "pareto": False, "candidate": "r28 ..."},
            {"number": 2, "state": "FAIL", "feasible": False, "pareto": False},
        ]
    )  # fmt: skip


def test_report_labels_estimated_latency(tmp_path: Path) -> None:
    trials = _frame()
    config = {"target": "jetson-orin-nano", "target_label": "estimated (roofline model, uncalibrated; not measured on the device)",
              "target_estimated": True, "budget_ms": 10.0, "supernet": {"largest_test_acc": 0.9}}  # fmt: skip
    text = render_report(tmp_path, trials, trials[trials["pareto"]], config)
    assert "ESTIMATED, not measured on the device" in text
    assert "0.800 ms*" in text and "estimated latency" in text
    assert "complete 2" in text and "fail 1" in text and "1 within budget" in text


def test_report_for_a_measured_target_has_no_estimate_marks(tmp_path: Path) -> None:
    trials = _frame()
    config = {"target": "x86-cpu-onnxruntime", "target_label": "measured (onnxruntime 1.32.0)", "target_estimated": False,
              "budget_ms": 10.0, "supernet": {}}  # fmt: skip
    text = render_report(tmp_path, trials, trials[trials["pareto"]], config)
    assert "estimated" not in text.lower()
    assert "| 0 | 90.00% | 89.00% | 0.800 ms |" in text


def test_no_feasible_trial_is_said_plainly(tmp_path: Path) -> None:
    trials = _frame()
    text = render_report(tmp_path, trials, trials.iloc[0:0], {"budget_ms": 0.1, "supernet": {}})
    assert "No completed trial met the budget." in text


def test_a_repeated_candidate_is_listed_once_in_the_pareto_set() -> None:
    import optuna

    from autocompress.results import pareto_numbers

    study = optuna.create_study(directions=["maximize", "minimize"])

    def add(acc: float, ms: float, **attrs: int) -> None:
        study.add_trial(optuna.trial.create_trial(
            values=[acc, ms], user_attrs=attrs, system_attrs={"constraints": [ms - 1.0]}))  # fmt: skip

    add(0.90, 0.8)
    add(0.85, 0.5)
    add(0.85, 0.5, duplicate_of=1)  # the sampler proposed trial 1's candidate again
    add(0.85, 0.5)  # another candidate that happens to tie: a model of its own
    add(0.95, 1.2)  # over the budget
    assert pareto_numbers(study) == {0, 1, 3}


def test_run_files_that_are_fifos_are_refused_not_read(tmp_path) -> None:
    """The explorer and export read config.yaml and trials.parquet of any folder in --runs-dir:
    a FIFO there is named in one line, never opened (it would block forever)."""
    import os

    from autocompress.exceptions import RunDirError
    from autocompress.results import load_trials, read_config

    os.mkfifo(tmp_path / "config.yaml")
    os.mkfifo(tmp_path / "trials.parquet")
    with pytest.raises(RunDirError, match="is a FIFO"):
        read_config(tmp_path)
    with pytest.raises(RunDirError, match="is a FIFO"):
        load_trials(tmp_path)
