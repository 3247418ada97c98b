"""``export --overwrite`` replaces an earlier export, never a folder of anything else (a hand-made
run directory: no search)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from autocompress.exceptions import BadInputError
from autocompress.export import export_trial


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"target": "x86-cpu-onnxruntime", "budget_ms": 1.0}))
    pd.DataFrame({"number": [0], "state": ["COMPLETE"], "latency_ms": [0.1], "val_accuracy": [0.5],
                  "test_accuracy": [0.5], "feasible": [True], "pareto": [True]}).to_parquet(run / "trials.parquet")  # fmt: skip
    (run / "models" / "trial_0000.onnx").write_bytes(b"onnx")
    return run


@pytest.mark.parametrize("where", ["run", "models", "home"])
def test_overwrite_refuses_a_folder_that_is_not_an_export(tmp_path: Path, where: str) -> None:
    """``export RUN --trial 0 --out RUN --overwrite`` replaced the whole run (trials, study,
    models) with the three exported files."""
    run = _run(tmp_path)
    out = {"run": run, "models": run / "models", "home": tmp_path}[where]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(BadInputError, match="--overwrite replaces an earlier export only"):
        export_trial(run, out_dir=out, trial=0, overwrite=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_overwrite_still_replaces_an_earlier_export(tmp_path: Path) -> None:
    from autocompress.exceptions import AutoCompressError

    run = _run(tmp_path)
    out = tmp_path / "exported"
    out.mkdir()
    for name in ("model_card.json", "model_card.md", "trial_0003.xml", "trial_0003.bin"):
        (out / name).write_text("x")
    with pytest.raises(AutoCompressError) as exc:  # the hand-made run has no space: the export stops later
        export_trial(run, out_dir=out, trial=0, overwrite=True)
    assert "--overwrite" not in str(exc.value)
