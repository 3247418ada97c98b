"""What the explorer says about a run with nothing to show, from small hand-written run
directories (no search)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from autocompress.app import logic


def _run(tmp_path: Path, states: list[str], errors: list[str | None]) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"target": "x86-cpu-onnxruntime", "budget_ms": 1.0}))
    pd.DataFrame({"number": range(len(states)), "state": states, "latency_ms": float("nan"),
                  "val_accuracy": float("nan"), "error": errors}).to_parquet(run / "trials.parquet")  # fmt: skip
    return run


def test_a_run_whose_every_trial_failed_says_so_and_why(tmp_path: Path) -> None:
    """It said "No trial has completed yet (3 started); this page refreshes as trials complete."
    as if the search were still going: the user waited for nothing."""
    view = logic.load_view(_run(tmp_path, ["FAIL"] * 3, [None, "ValueError: x", "RuntimeError: out of memory"]))
    assert view.level == "error"
    assert "3 of 3 failed (trial 2: RuntimeError: out of memory)" in view.problem and "yet" not in view.problem


def test_a_run_with_a_trial_still_running_is_waited_for(tmp_path: Path) -> None:
    view = logic.load_view(_run(tmp_path, ["FAIL", "RUNNING"], ["ValueError: x", None]))
    assert view.level == "info" and "No trial has completed yet (2 started)" in view.problem


def test_explore_refuses_a_busy_port_or_a_bad_host_in_one_line(tmp_path: Path) -> None:
    """A port in use printed "explorer: http://127.0.0.1:PORT" (someone else's server) and then
    Streamlit's "Port PORT is not available", exit 1; a bad --host ended in a traceback."""
    import socket

    from tests.helpers import assert_one_line_error, cli

    run = _run(tmp_path, ["FAIL"], [None])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = cli("explore", str(run), "--port", str(port), timeout=60)
        assert_one_line_error(proc, 2, f"port {port} on 127.0.0.1 is already in use", "--port")
        assert "explorer: http" not in proc.stdout
    proc = cli("explore", str(run), "--host", "999.1.1.1", "--port", str(port), timeout=60)
    assert_one_line_error(proc, 2, "--host 999.1.1.1 cannot be resolved")


def test_a_finalize_still_running_is_not_called_finished() -> None:
    """While the teacher trained (or after a Ctrl-C) the page said "Finalized after the search
    (...): 0 deployed better on validation, 0 kept the search's model"."""
    trials = pd.DataFrame({"number": [0, 1, 2], "state": "COMPLETE", "final_state": ["kept", "running", None]})
    note = logic.finalize_note({"finalize": {"schedule_text": "2 epochs"}}, trials)
    assert note.startswith("finalize after the search is running (or was interrupted) (2 epochs)")
    assert "1 not finished (`autocompress finalize RUN` resumes an interrupted one)" in note
    done = logic.finalize_note({}, trials.assign(final_state=["kept", "finalized", None]))
    assert done.startswith("finalized after the search") and "not finished" not in done


def test_compare_gives_every_accuracy_with_two_decimals() -> None:
    """The side-by-side table showed 27.0 beside 26.33, and a delta of 9.0 (no sign, one decimal)."""
    rows = [pd.Series({"number": n, "val_accuracy": v, "test_accuracy": t, "latency_ms": 0.1, "size_bytes": 1000,
                       "params": 1, "macs": 1}) for n, v, t in ((3, 0.27, 0.3733), (0, 0.2633, 0.2833))]  # fmt: skip
    table = logic.compare(rows, ref=rows[1])
    assert list(table.loc["val acc %"]) == ["27.00", "26.33"]
    assert list(table.loc["test acc %"]) == ["37.33", "28.33"]
    assert list(table.loc["Δ test acc vs teacher (pp)"]) == ["+9.00", "+0.00"]


def test_a_user_models_run_is_compared_with_the_original_model() -> None:
    """A --model run's deltas were "vs the fp32 teacher" = trial 0 (the unpruned model fine-tuned
    in the search), while its teacher is the original model and the search's table compares with
    that: trial 3 was +9.00 pp in the explorer, +14.00 pt in the search's table."""
    config = {"kind": "model", "baseline": {"val_accuracy": 0.2067, "test_accuracy": 0.2333, "latency_ms": 0.062,
                                            "size_bytes": 23184}}  # fmt: skip
    ref = logic.original(config)
    assert ref is not None and int(ref["number"]) == -1
    row = pd.Series({"number": 3, "val_accuracy": 0.27, "test_accuracy": 0.3733, "latency_ms": 0.0976,
                     "size_bytes": 16557, "params": 1, "macs": 1})  # fmt: skip
    table = logic.compare([row], ref=ref, ref_name="original")
    assert table.loc["Δ test acc vs original (pp)", "trial 3"] == "+14.00"
    assert logic.original({"kind": "supernet", "baseline": config["baseline"]}) is None  # our space: the teacher
    trials = pd.DataFrame({"number": [0], "state": "COMPLETE", "seeded": "largest", "val_accuracy": 0.5,
                           "test_accuracy": 0.5, "size_bytes": 1000, "latency_ms": 0.1})  # fmt: skip
    assert logic.candidates(trials, kind="model")["role"].tolist() == ["unpruned fp32 (largest)"]
    assert logic.candidates(trials)["role"].tolist() == ["fp32 teacher (largest)"]
