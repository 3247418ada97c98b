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
