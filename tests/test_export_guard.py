"""``export --overwrite`` replaces an earlier export, never a folder of anything else (a hand-made
run directory: no search)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pandas as pd
import pytest
import yaml

from autocompress.exceptions import BadInputError
from autocompress.export import export_trial


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"target": "x86-cpu-onnxruntime", "budget_ms": 1.0}))
    from autocompress.results import RESULT_COLUMNS

    pd.DataFrame({"number": [0], "state": ["COMPLETE"], **{c: [0.5] for c in RESULT_COLUMNS}, "latency_ms": [0.1],
                  "feasible": [True], "pareto": [True]}).to_parquet(run / "trials.parquet")  # fmt: skip
    onnx.save(_identity(), str(run / "models" / "trial_0000.onnx"))
    return run


def _identity() -> onnx.ModelProto:
    x = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 1, 2, 2])
    y = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 1, 2, 2])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y])
    return onnx.helper.make_model(graph)


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


@pytest.mark.parametrize("damage", [b"", b"garbage", "truncated"])
def test_a_damaged_model_file_is_one_line_exit_2(tmp_path: Path, damage: bytes | str) -> None:
    """A truncated or overwritten models/trial_NNNN.onnx ended in "internal error (a bug):
    InvalidProtobuf ...", exit 1."""
    from tests.helpers import assert_one_line_error, cli

    run = _run(tmp_path)
    model = run / "models" / "trial_0000.onnx"
    model.write_bytes(model.read_bytes()[:40] if damage == "truncated" else damage)
    proc = cli("export", str(run), "--trial", "0", "--out", str(tmp_path / "out"), timeout=120)
    assert_one_line_error(proc, 2, f"trial 0's model cannot be exported: {model} is not an ONNX model")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_a_moved_runs_duplicate_trial_exports_its_twins_file(tmp_path: Path) -> None:
    """A duplicate trial has no file of its own; its recorded model_path is its twin's, absolute.
    Once the run moved, export said "trial 1's model is missing" though the twin's file is in
    the run's models/."""
    from autocompress.export import trial_model

    run = _run(tmp_path)
    row = pd.Series({"number": 1, "state": "COMPLETE", "duplicate_of": 0,
                     "model_path": "/where/the/run/was/models/trial_0000.onnx"})  # fmt: skip
    assert trial_model(run, row) == run / "models" / "trial_0000.onnx"


def test_sigterm_during_an_export_leaves_no_temporary_folder(tmp_path: Path) -> None:
    """``kill`` (SIGTERM) mid-export ended the process at once: the half-written temporary folder
    (``.OUT.XXXX.tmp``, the model's files without a card) stayed beside --out. In a process of its
    own: a SIGTERM sent to the test runner, after Ray and torch have set up their threads, once
    crashed the whole suite."""
    import subprocess
    import sys
    import textwrap

    from tests.helpers import ROOT

    run = _run(tmp_path)
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        import autocompress.export as export
        from autocompress.cli import _term_as_interrupt

        def write_then_killed(source, folder, stem, fmt):
            (folder / f"{{stem}}.onnx").write_bytes(source.read_bytes())
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not interrupt the export")

        export._write_model = write_then_killed
        before = signal.getsignal(signal.SIGTERM)
        try:
            with _term_as_interrupt():
                export.export_trial(Path({str(run)!r}), out_dir=Path({str(tmp_path / "out")!r}), trial=0)
        except KeyboardInterrupt:
            sys.exit(42 if signal.getsignal(signal.SIGTERM) == before else 1)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 42, proc.stderr[-2000:]  # interrupted, and the handler put back
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
