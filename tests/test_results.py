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


def _search_frame() -> pd.DataFrame:
    """A run as trials.parquet holds it: a front of three (0, 1, 7), one point smaller but not
    faster (2), two fast ones far below the best (3, 4), one dominated (5), one over budget (6)."""
    rows = [  # number, val acc, latency ms, size bytes, pareto, feasible
        (0, 0.92, 1.0, 200_000, True, True),
        (1, 0.90, 0.6, 150_000, True, True),
        (2, 0.89, 0.8, 50_000, True, True),  # trial 1 is more accurate and faster; smaller than both
        (3, 0.80, 0.2, 30_000, True, True),
        (4, 0.78, 0.1, 20_000, True, True),
        (5, 0.85, 0.9, 300_000, False, True),
        (6, 0.95, 3.0, 400_000, False, False),
        (7, 0.87, 0.5, 100_000, True, True),  # exactly 5 pp below the best: within the window
    ]
    return pd.DataFrame([
        {"number": n, "state": "COMPLETE", "val_accuracy": a, "test_accuracy": a - 0.01, "latency_ms": ms,
         "size_bytes": b, "params": b // 4, "pareto": p, "feasible": f, "candidate": f"c{n} | int8"}
        for n, a, ms, b, p, f in rows
    ])  # fmt: skip


def _numbers(frame: pd.DataFrame, col: str) -> set[int]:
    return {int(n) for n in frame.loc[frame[col], "number"]}


def test_the_front_is_the_accuracy_latency_front_within_the_window() -> None:
    from autocompress.results import mark_fronts

    marked = mark_fronts(_search_frame())
    assert _numbers(marked, "front") == {0, 1, 7}
    assert _numbers(marked, "far_below") == {3, 4}
    assert _numbers(marked, "pareto") == {0, 1, 2, 3, 4, 7}  # unchanged: export --best and warm start read it
    wide = mark_fronts(_search_frame(), 15.0)  # 0.78 is within 15 pp of 0.92: the fast ones join the front
    assert _numbers(wide, "front") == {0, 1, 3, 4, 7} and not wide["far_below"].any()
    narrow = mark_fronts(_search_frame(), 0.0)  # the best alone still has a front
    assert _numbers(narrow, "front") == {0} and _numbers(narrow, "far_below") == {1, 2, 3, 4, 7}


def test_a_run_whose_best_is_alone_has_a_front() -> None:
    from autocompress.results import mark_fronts, pareto_frame

    trials = _search_frame()
    trials["pareto"] = trials["number"] == 0
    marked = mark_fronts(trials)
    assert _numbers(marked, "front") == {0} and not marked["far_below"].any()
    assert list(pareto_frame(marked)["number"]) == [0]
    none = mark_fronts(trials.assign(pareto=False))
    assert not none["front"].any() and not none["far_below"].any()


def test_pareto_csv_order_is_front_then_smaller_then_far_below() -> None:
    from autocompress.results import mark_fronts, pareto_frame

    assert list(pareto_frame(mark_fronts(_search_frame()))["number"]) == [7, 1, 0, 2, 4, 3]


def test_report_leads_with_the_front_and_lists_the_far_below_apart(tmp_path: Path) -> None:
    from autocompress.results import mark_fronts, pareto_frame

    config = {"target": "x86-cpu-onnxruntime", "target_label": "measured", "budget_ms": 2.0, "supernet": {}}
    trials = mark_fronts(_search_frame())
    text = render_report(tmp_path, trials, pareto_frame(trials), config)
    front, also, far = (text.index(s) for s in ("## Accuracy–latency front", "Also on the Pareto set", "Far below"))
    assert front < text.index("| 7 |") < text.index("| 1 |") < text.index("| 0 |") < also < text.index("| 2 |") < far
    assert "| 3 |" not in text and "| 4 |" not in text and "| 5 |" not in text
    assert ("Far below the best (more than 5 pp under 92.00%): 2 candidates, fastest 0.100 ms at 78.00% "
            "(trials 4, 3)") in text  # fmt: skip
    assert "`c0 \\| int8`" in text  # a pipe in the candidate does not split the table's cell
    # re-rendered with the run's recorded window (config.yaml): the fast ones are on the front
    wide = render_report(tmp_path, trials, pareto_frame(trials.drop(columns=["front", "far_below"])),
                         {**config, "accuracy_window_pp": 20})  # fmt: skip
    assert "Far below" not in wide and "| 4 |" in wide.split("Also on the Pareto set")[0]


def test_reports_resume_command_names_a_shipped_space_by_name(tmp_path: Path) -> None:
    """report.md's resume command gave a shipped space as its installed path (site-packages/...,
    which changes with every install), where the CLI's says ``--space tiny``."""
    from autocompress.results import _next_search
    from autocompress.space import SPACES_DIR

    config = {"target": "jetson-orin-nano", "budget_ms": 0.5, "space_path": str(SPACES_DIR / "tiny.yaml"),
              "trials": 6, "seed": 3}  # fmt: skip
    command = next(ln for ln in _next_search(tmp_path, config) if "--resume" in ln)
    assert " --space tiny --run-dir " in command and str(SPACES_DIR) not in command, command
    assert command.endswith("--resume --trials 36 --seed 3"), command
