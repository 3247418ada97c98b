"""`autocompress export`: the exported ONNX / OpenVINO files predict what the trial's model
predicts, the model card's numbers are the run's, and bad input ends with one line, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from autocompress.data import load_dataset
from autocompress.exceptions import BadInputError
from autocompress.export import select_trial
from autocompress.runtime import runner
from tests.helpers import assert_one_line_error, cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _trials(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "trials.parquet").set_index("number")


def _batch(run_dir: Path, resolution: int, n: int = 64) -> np.ndarray:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    data = load_dataset(cfg["dataset"]["spec"], subset=cfg["dataset"]["subset"], seed=cfg["seed"])
    x, _ = data.split("test", resolution)
    return x[:n].numpy()


def _best(run_dir: Path) -> int:
    t = _trials(run_dir)
    front = t[(t["state"] == "COMPLETE") & t["feasible"] & t["pareto"]]
    return int(front.sort_values(["val_accuracy", "latency_ms"], ascending=[False, True]).index[0])


def test_onnx_export_predicts_as_the_trial_and_card_matches_the_run(small_run, tmp_path) -> None:
    trials = _trials(small_run)
    number = 0  # the fp32 teacher: over budget, still exportable by number
    out = tmp_path / "onnx"
    proc = cli("export", str(small_run), "--trial", str(number), "--format", "onnx", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "matches the trials table" in proc.stdout
    model = out / "trial_0000.onnx"
    assert sorted(p.name for p in out.iterdir()) == ["model_card.json", "model_card.md", "trial_0000.onnx"]

    row = trials.loc[number]
    x = _batch(small_run, int(row["resolution"]))
    ours = runner(model)(x)
    theirs = runner(Path(row["model_path"]))(x)  # the deployed file (final_0000.onnx once finalized)
    np.testing.assert_array_equal(ours, theirs)

    card = json.loads((out / "model_card.json").read_text())
    cfg = yaml.safe_load((small_run / "config.yaml").read_text())
    assert card["run"]["trial"] == number and card["format"] == "onnx"
    assert card["accuracy"]["test"] == pytest.approx(row["test_accuracy"], abs=1e-12)
    assert card["accuracy"]["test_samples"] == cfg["dataset"]["split_sizes"]["test"]
    assert card["accuracy"]["measured_with"].startswith("onnxruntime ")
    assert card["predicted"]["latency_ms"] == pytest.approx(row["latency_ms"])
    if pd.isna(row["energy_mj"]):  # the measured CPU table has no power figure
        assert card["predicted"]["energy_mj"] is None and "| n/a |" in (out / "model_card.md").read_text()
    else:
        assert card["predicted"]["energy_mj"] == pytest.approx(row["energy_mj"])
    assert card["predicted"]["target"] == cfg["target"] == "x86-cpu-onnxruntime"
    assert card["predicted"]["source"] == "measured"
    assert card["predicted"]["source_label"] == cfg["target_label"]
    assert card["size_bytes"] == row["size_bytes"] == model.stat().st_size
    assert (card["params"], card["macs"]) == (row["params"], row["macs"])
    assert card["candidate"]["description"] == row["candidate"]
    assert card["candidate"]["choices"]["s1_width"] == row["s1_width"]
    assert card["measured_here"]["runtime"] == "onnxruntime" and card["measured_here"]["median_ms"] > 0
    assert card["dataset"]["name"] == "fashion-mnist"
    md = (out / "model_card.md").read_text()
    assert f"{100 * row['test_accuracy']:.2f}%" in md
    assert "import onnxruntime as ort" in md and "trial_0000.onnx" in md
    assert row["candidate"] in md
    # the teacher is over the run's budget: the card and the command say so
    assert "| the run's budget |" in md and "**NOT met**" in md and "over the run's budget" in proc.stdout
    # the tiny space's inputs are smaller than Fashion-MNIST's 28x28: the card says how they were resized
    res = int(row["resolution"])
    assert res < 28 and f"28x28 images were resized to {res}x{res}: bilinear with antialiasing" in md
    # the run's target runs ONNX Runtime: the TensorRT section is offered as another device, not "the device"
    assert "## On an NVIDIA device (TensorRT)" in md and "runs onnxruntime" in md


def test_the_best_within_a_budget_bounds_what_the_run_bounded() -> None:
    """``export --best --budget`` of a run whose budget bounds the upper end of each interval
    (``--budget-on upper``) picks by that end too, not by the predicted point."""
    trials = pd.DataFrame({
        "number": [1, 2], "state": "COMPLETE", "feasible": True, "pareto": True, "val_accuracy": [0.90, 0.85],
        "latency_ms": [0.30, 0.25], "latency_hi_ms": [0.34, 0.29],
    })  # fmt: skip
    assert int(select_trial(trials, best=True, budget_ms=0.32)["number"]) == 1
    assert int(select_trial(trials, best=True, budget_ms=0.32, budget_on="upper")["number"]) == 2
    with pytest.raises(BadInputError, match="within 0.280 ms .at the upper end of its latency interval"):
        select_trial(trials, best=True, budget_ms=0.28, budget_on="upper")


def _first_int8(run_dir: Path) -> int:
    t = _trials(run_dir)
    int8 = t[(t["state"] == "COMPLETE") & ((t["s0_precision"] == "int8") | (t["s1_precision"] == "int8"))]
    assert not int8.empty, "the small run has no int8 trial to export"
    return int(int8.index[0])


@pytest.mark.parametrize("which", ["best", "int8"])
def test_openvino_export_keeps_precision_and_predicts_as_the_trial(small_run, tmp_path, which) -> None:
    import openvino as ov

    number = _best(small_run) if which == "best" else _first_int8(small_run)
    row = _trials(small_run).loc[number]
    out = tmp_path / "ov"
    pick = ["--best"] if which == "best" else ["--trial", str(number)]
    proc = cli("export", str(small_run), *pick, "--format", "openvino", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    xml = out / f"trial_{number:04d}.xml"
    assert xml.is_file() and xml.with_suffix(".bin").is_file()

    model = ov.Core().read_model(str(xml))
    ops = {op.get_type_name() for op in model.get_ops()}
    int8 = any(row[f"s{i}_precision"] == "int8" for i in range(2))
    assert ("FakeQuantize" in ops) == int8, ops

    x = _batch(small_run, int(row["resolution"]))
    ours = runner(xml, runtime="openvino")(x)
    theirs = runner(small_run / "models" / f"trial_{number:04d}.onnx")(x)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.98
    np.testing.assert_allclose(ours, theirs, atol=0.25 if int8 else 1e-3)

    card = json.loads((out / "model_card.json").read_text())
    assert card["run"]["trial"] == number and card["format"] == "openvino"
    assert abs(card["accuracy"]["test"] - row["test_accuracy"]) <= 0.005
    assert card["accuracy"]["measured_with"].startswith("openvino ")
    assert card["size_bytes"] == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    assert "import openvino as ov" in (out / "model_card.md").read_text()


@pytest.fixture(scope="module")
def broken_runs(small_run, tmp_path_factory) -> dict[str, Path]:
    """Copies of the small run, each damaged one way."""
    root = tmp_path_factory.mktemp("broken")
    runs = {}
    for name in ("failed", "corrupt", "mismatch"):
        runs[name] = root / name
        shutil.copytree(small_run, runs[name])
    t = pd.read_parquet(runs["failed"] / "trials.parquet")
    t.loc[t["number"] == 1, "state"] = "FAIL"
    t.loc[t["number"] == 1, "error"] = "RuntimeError: out of memory"
    t.to_parquet(runs["failed"] / "trials.parquet", index=False)
    (runs["corrupt"] / "trials.parquet").write_bytes(b"PAR1 this is not parquet")
    t = pd.read_parquet(runs["mismatch"] / "trials.parquet")
    t.loc[t["number"] == 1, "test_accuracy"] = t.loc[t["number"] == 1, "test_accuracy"] + 0.1
    t.to_parquet(runs["mismatch"] / "trials.parquet", index=False)
    return runs


@pytest.mark.parametrize(
    ("case", "args", "fragment"),
    [
        ("missing-run", ["--trial", "0"], "does not exist"),
        ("no-such-trial", ["--trial", "99"], "has no trial 99"),
        ("failed-trial", ["--trial", "1"], "did not complete (state FAIL: RuntimeError: out of memory)"),
        ("bad-format", ["--trial", "0", "--format", "tflite"], "unknown format 'tflite'"),
        ("corrupt-run", ["--trial", "0"], "trials.parquet is unreadable"),
        ("trial-and-best", ["--trial", "0", "--best"], "exactly one of --trial N or --best"),
        ("budget-too-tight", ["--best", "--budget", "1us"], "no feasible Pareto trial within 0.001 ms"),
        ("mismatch", ["--trial", "1"], "the trials table records"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(small_run, broken_runs, tmp_path, case, args, fragment) -> None:
    run = {"missing-run": tmp_path / "nope", "failed-trial": broken_runs["failed"],
           "corrupt-run": broken_runs["corrupt"], "mismatch": broken_runs["mismatch"]}.get(case, small_run)  # fmt: skip
    out = tmp_path / "out"
    proc = cli("export", str(run), *args, "--out", str(out))
    assert_one_line_error(proc, 2, fragment)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folder left behind


def test_existing_output_is_not_overwritten_without_flag(small_run, tmp_path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = cli("export", str(small_run), "--trial", "1", "--out", str(out))
    assert_one_line_error(proc, 2, "already exists")
    assert (out / "keep.txt").read_text() == "mine"
