"""The model card's text, rendered from a card (no search, no export): each row says what its
number is."""

from __future__ import annotations

from typing import Any

from autocompress.export import render_card


def _card(**over: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "autocompress_version": "0", "exported": "2026-01-01T00:00:00+00:00",
        "run": {"dir": "/runs/r", "name": "r", "trial": 0, "seeded": "largest", "pareto": True, "feasible": True},
        "format": "onnx", "files": {"trial_0000.onnx": {"bytes": 100, "sha256": "0"}}, "size_bytes": 100,
        "dataset": {"name": "fashion-mnist", "classes": ["a", "b"], "split_sizes": {}, "subset": None,
                    "input": {"shape": ["batch", 1, 28, 28], "dtype": "float32", "range": "[0, 1]", "name": "input",
                              "resize": None},
                    "output": {"name": "logits", "shape": ["batch", 2]}},
        "accuracy": {"test": 0.5853, "test_samples": 1500, "measured_with": "onnxruntime 1 on the exported file",
                     "test_in_trials_table": 0.5853, "scored_with": "onnxruntime", "allowed_difference": 0.0,
                     "val_in_trials_table": 0.5927},
        "predicted": {"target": "jetson-orin-nano", "latency_ms": 0.5, "energy_mj": 7.0, "source": "estimated",
                      "source_label": "estimated (roofline)", "budget_ms": 5.0, "budget_on": "point",
                      "family_note": None, "latency_interval_ms": None, "latency_interval": "latency interval: n/a"},
        "measured_here": {"runtime": "onnxruntime", "runtime_version": "1", "cpu": "x", "threads": 1, "batch": 1,
                          "median_ms": 0.02, "p10_ms": 0.01, "p90_ms": 0.03, "reps": 100},
        "params": 10, "macs": 100,
        "candidate": {"description": "c", "choices": {}, "kd": {"alpha": 0.0, "temperature": 4.0,
                                                                 "finetune_steps": 0}, "problem": "supernet", "parts": []},
        "search": {"space": "tiny", "sampler": "tpe", "seed": 0},
        "finalize": None,
    }  # fmt: skip
    card.update(over)
    return card


def test_a_finalized_files_validation_accuracy_is_not_called_the_searchs() -> None:
    """The finalized file's validation accuracy (59.27%) was labelled "validation accuracy
    (search)", while the finalize row gives the search's as 57.13%."""
    fin = {"state": "finalized", "deployed": "finalized", "schedule": "2 epochs", "finalized_at": None,
           "search_val_accuracy": 0.5713, "search_test_accuracy": 0.5547, "final_val_accuracy": 0.5927,
           "final_test_accuracy": 0.5853}  # fmt: skip
    md = render_card(_card(finalize=fin))
    assert "| validation accuracy (the finalized file) | 59.27% |" in md
    assert "(search) | 59.27%" not in md and "57.13% -> 59.27%" in md
    # a file the search deployed keeps its label
    assert "| validation accuracy (search) | 59.27% |" in render_card(_card())


def test_export_names_the_runtime_that_scored_the_trials_table(tmp_path, monkeypatch) -> None:
    """An OpenVINO target's trial exported as ONNX, within the allowed difference: the command
    said the table's figure was ONNX Runtime's."""
    from typer.testing import CliRunner

    import autocompress.export as export
    from autocompress.cli import app

    acc = {**_card()["accuracy"], "test": 0.4567, "test_in_trials_table": 0.458, "scored_with": "openvino",
           "allowed_difference": 0.005}  # fmt: skip
    card = _card(accuracy=acc)
    monkeypatch.setattr(export, "export_trial", lambda *a, **k: export.Export(tmp_path / "o", (), card))
    res = CliRunner().invoke(app, ["export", str(tmp_path), "--trial", "5", "--out", str(tmp_path / "o")],
                             env={"COLUMNS": "300"})  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "trials table 45.80% with OpenVINO, within the allowed 0.5 points" in res.output
    assert "ONNX Runtime" not in res.output


def test_an_openvino_runs_accuracies_are_not_called_onnx_runtimes() -> None:
    """The explorer's chart and report.md named ONNX Runtime as the scorer of every run; an
    OpenVINO target's trials are scored by OpenVINO."""
    from pathlib import Path

    import pandas as pd

    from autocompress.app import logic
    from autocompress.results import accuracy_runtime_name, pareto_frame, render_report

    trials = pd.DataFrame({
        "number": [0, 1], "state": "COMPLETE", "val_accuracy": [0.5, 0.6], "test_accuracy": [0.5, 0.6],
        "latency_ms": [0.03, 0.04], "size_bytes": [1000, 2000], "params": 1, "macs": 1, "feasible": True,
        "pareto": True, "accuracy_runtime": "openvino", "candidate": "c",
    })  # fmt: skip
    assert accuracy_runtime_name(trials) == "OpenVINO"
    assert accuracy_runtime_name(trials.drop(columns="accuracy_runtime")) == "ONNX Runtime"  # older runs
    config = {"target": "x86-cpu-openvino", "budget_ms": 5.0}
    fig = logic.pareto_figure(logic.candidates(trials), config)
    assert fig.layout.yaxis.title.text == "validation accuracy (OpenVINO), %"
    report = render_report(Path("run"), trials, pareto_frame(trials), config)
    assert "Accuracies are OpenVINO's on each exported file" in report and "ONNX Runtime" not in report


def test_the_search_suggests_exporting_an_openvino_targets_best_as_openvino_ir(tmp_path) -> None:
    """An OpenVINO target's run was told `export RUN --best --format onnx`: an ONNX file scored
    by ONNX Runtime, not the IR its accuracy and latency were measured as."""
    import pandas as pd

    from autocompress import cli
    from autocompress.results import pareto_frame
    from autocompress.search.config import SearchOutcome

    trials = pd.DataFrame({
        "number": [0], "state": "COMPLETE", "val_accuracy": [0.5], "test_accuracy": [0.5], "latency_ms": [0.03],
        "energy_mj": [float("nan")], "size_bytes": [1000], "params": 1, "macs": 1, "feasible": True, "pareto": True,
        "candidate": "c",
    })  # fmt: skip
    lines = {}
    for runtime in ("openvino", "onnxruntime"):
        config = {"target": f"x86-cpu-{runtime}", "target_runtime": runtime, "budget_ms": 5.0, "trials": 1,
                  "target_label": "measured", "space_path": "tiny",
                  "supernet": {"cached": True, "largest_test_acc": 0.5, "smallest_test_acc": 0.4}}  # fmt: skip
        with cli.out.capture() as cap:
            cli._print_outcome(SearchOutcome(tmp_path, config, trials, pareto_frame(trials)))
        lines[runtime] = next(ln.strip() for ln in cap.get().splitlines() if "autocompress export" in ln)
    assert lines["openvino"] == f"autocompress export {tmp_path} --best --format openvino"
    assert lines["onnxruntime"] == f"autocompress export {tmp_path} --best --format onnx"
