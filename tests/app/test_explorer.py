"""The explorer's logic (filters, teacher deltas, messages for partial or corrupt runs) and its
Streamlit page, run headless with ``streamlit.testing.v1.AppTest``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from autocompress.app import EXPLORER, logic
from tests.helpers import ROOT

pytestmark = [pytest.mark.slow]


def _app(monkeypatch: pytest.MonkeyPatch, run_dir: Path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("AUTOCOMPRESS_RUN", str(run_dir))
    monkeypatch.setenv("AUTOCOMPRESS_RUNS_DIR", str(run_dir.parent))
    at = AppTest.from_file(str(EXPLORER), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _frame(at, column: str) -> pd.DataFrame:  # noqa: ANN001
    """The page's table that has ``column`` (AppTest finds dataframes by position, not key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _caption(at) -> str:  # noqa: ANN001
    return next(c.value for c in at.caption if "candidates match the filters" in c.value)


@pytest.fixture(scope="module")
def cands(small_run) -> pd.DataFrame:
    view = logic.load_view(small_run)
    assert view.ok, view.problem
    return logic.candidates(view.trials)


def test_filters_narrow_the_candidates(small_run, cands) -> None:
    assert len(cands) == 5
    everything = logic.apply_filters(cands, logic.Filters())
    assert len(everything) == 5
    mid_acc = float(cands["val_acc_pct"].median())
    f = logic.apply_filters(cands, logic.Filters(min_accuracy_pct=mid_acc))
    assert len(f) == int((cands["val_acc_pct"] >= mid_acc).sum()) and (f["val_acc_pct"] >= mid_acc).all()
    mid_lat = float(cands["latency_ms"].median())
    f = logic.apply_filters(cands, logic.Filters(max_latency_ms=mid_lat))
    assert set(f["number"]) == set(cands[cands["latency_ms"] <= mid_lat]["number"])
    mid_kb = float(cands["size_kb"].median())
    f = logic.apply_filters(cands, logic.Filters(max_size_kb=mid_kb))
    assert (f["size_bytes"] <= 1000 * mid_kb).all() and len(f) >= 1
    f = logic.apply_filters(cands, logic.Filters(precisions=("fp32",)))
    fp32_only = cands[(cands["s0_precision"] == "fp32") & (cands["s1_precision"] == "fp32")]
    assert set(f["number"]) == set(fp32_only["number"]) and 0 in set(f["number"])  # the teacher is fp32
    f = logic.apply_filters(cands, logic.Filters(prune_range=(0.0, 0.0)))
    unpruned = cands[(cands["s0_prune"] == 0) & (cands["s1_prune"] == 0)]
    assert set(f["number"]) == set(unpruned["number"])
    config = yaml.safe_load((small_run / "config.yaml").read_text())
    # the filters' ranges come from the space, not from the trials so far (a growing run keeps them)
    assert logic.filter_bounds(config, cands.iloc[:2]) == (["fp32", "int8"], 0.5)
    f = logic.apply_filters(cands, logic.Filters(only_pareto=True))
    assert f["pareto"].all() and len(f) == int(cands["pareto"].sum())
    table = logic.table(f)
    assert list(table["trial"]) == list(f.sort_values("val_accuracy", ascending=False)["number"])


def test_teacher_deltas_are_against_the_seeded_largest_network(small_run, cands) -> None:
    trials = pd.read_parquet(small_run / "trials.parquet")
    teacher = logic.teacher(trials)
    assert teacher is not None and int(teacher["number"]) == 0 and teacher["seeded"] == "largest"
    small = cands.set_index("number").loc[1]
    d = logic.teacher_deltas(small, teacher)
    assert d["size_bytes"] == small["size_bytes"] - teacher["size_bytes"] < 0
    assert d["latency_ms"] == pytest.approx(small["latency_ms"] - teacher["latency_ms"]) and d["latency_ms"] < 0
    assert d["test_accuracy_pp"] == pytest.approx(100 * (small["test_accuracy"] - teacher["test_accuracy"]))
    assert d["compression_x"] == pytest.approx(teacher["size_bytes"] / small["size_bytes"]) and d["compression_x"] > 1
    assert logic.teacher_deltas(teacher, teacher)["test_accuracy_pp"] == 0


def test_latency_breakdown_adds_up_to_the_trial_latency(small_run, cands) -> None:
    config = yaml.safe_load((small_run / "config.yaml").read_text())
    for _, row in cands.iterrows():
        bd = logic.latency_breakdown(config, row)
        assert bd["latency_ms"].sum() == pytest.approx(row["latency_ms"], rel=1e-9)
        n_mbconv = int(row["s0_depth"]) + int(row["s1_depth"])
        assert (bd["block"].str.contains("mbconv")).sum() == n_mbconv


def test_page_shows_run_chart_table_and_follows_a_filter(small_run, cands, monkeypatch) -> None:
    at = _app(monkeypatch, small_run)
    assert at.title[0].value == f"Run {small_run.name}"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Target"] == "x86-cpu-onnxruntime"
    assert metrics["Trials done"] == "5 / 5"
    assert metrics["Latency figures"] == "measured"
    assert metrics["Sampler"] == "random"
    assert len(at.get("plotly_chart")) >= 2  # the Pareto scatter and the per-block breakdown
    assert _caption(at).startswith("5 of 5 candidates")
    assert "Test accuracy vs teacher" in metrics  # the default candidate is not the teacher

    cut = float(cands["val_acc_pct"].median())
    at.number_input(key="f_min_accuracy").set_value(cut).run()
    assert not at.exception
    n = int((cands["val_acc_pct"] >= cut).sum())
    assert _caption(at).startswith(f"{n} of 5 candidates")
    assert len(_frame(at, "status")) == n

    at.radio(key="x_axis").set_value("size").run()
    assert not at.exception
    kept = [int(x) for x in cands[cands["val_acc_pct"] >= cut]["number"]]
    assert len(kept) >= 2
    at.multiselect(key="compare").set_value(kept).run()
    compared = _frame(at, f"trial {kept[0]}")
    assert list(compared.columns) == [f"trial {x}" for x in kept]
    assert "Δ test acc vs teacher (pp)" in compared.index


def test_energy_axis_on_a_target_without_power_says_why_it_is_empty(small_run, monkeypatch) -> None:
    """The measured CPU table has no power figure: the energy axis drew an empty chart, unexplained."""
    at = _app(monkeypatch, small_run)
    charts = len(at.get("plotly_chart"))
    at.radio(key="x_axis").set_value("energy").run()
    assert not at.exception
    assert any("No energy figures in this run" in i.value and "x86-cpu-onnxruntime" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == charts - 1  # no empty Pareto chart


def test_empty_partial_and_corrupt_runs_show_a_message(small_run, tmp_path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    at = _app(monkeypatch, empty)
    assert "is empty" in at.error[0].value

    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(small_run / "config.yaml", partial / "config.yaml")
    at = _app(monkeypatch, partial)
    assert "no trial has finished yet" in at.info[0].value and not at.error

    corrupt = tmp_path / "corrupt"
    shutil.copytree(small_run, corrupt)
    (corrupt / "trials.parquet").write_bytes(b"PAR1 truncated")
    at = _app(monkeypatch, corrupt)
    assert "Cannot read this run's trials" in at.error[0].value

    bad_config = tmp_path / "bad-config"
    shutil.copytree(small_run, bad_config)
    (bad_config / "config.yaml").write_text("target: [unclosed\n")
    at = _app(monkeypatch, bad_config)
    assert "Cannot read this run" in at.error[0].value


def test_estimated_targets_are_labelled(small_run, tmp_path, monkeypatch) -> None:
    run = tmp_path / "jetson"
    shutil.copytree(small_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg.update(target="jetson-orin-nano", target_estimated=True, target_label="estimated (roofline model)",
               budget_ms=10.0, latency_range={"min_ms": 0.42, "max_ms": 0.54, "binds": False, "estimated": True})  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    at = _app(monkeypatch, run)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Latency figures"] == "ESTIMATED"
    assert any("ESTIMATED" in w.value for w in at.warning)
    # a budget far above every candidate says so, with a budget that would bind
    assert any("does not bind on jetson-orin-nano" in w.value and "e.g. 0.48 ms" in w.value for w in at.warning)
    assert "latency ms (est.)" in _frame(at, "status").columns
    at.multiselect(key="compare").set_value([0, 1]).run()  # the side-by-side table labels them too
    compared = _frame(at, "trial 0")
    assert {"latency (ESTIMATED)", "energy mJ (ESTIMATED)"} <= set(compared.index) and "latency" not in compared.index


def test_explore_verb_refuses_a_missing_run_in_one_line(tmp_path) -> None:
    from tests.helpers import assert_one_line_error, cli

    proc = cli("explore", str(tmp_path / "no-such-run"), "--port", "1")
    assert_one_line_error(proc, 2, "does not exist")
    proc = cli("explore", str(tmp_path), "--port", "70000")
    assert_one_line_error(proc, 2, "--port must be between 1 and 65535")


def test_export_button_writes_the_model_and_card_and_offers_downloads(small_run, tmp_path, monkeypatch) -> None:
    import json

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    at = _app(monkeypatch, run)
    trial = at.selectbox(key="detail").value
    at.radio(key="export_format").set_value("onnx").run()
    at.button(key="export").click().run()
    assert not at.exception and not at.error
    out = run / "exports" / f"trial_{trial:04d}-onnx"
    assert at.success[0].value == f"Exported to {out}"
    card = json.loads((out / "model_card.json").read_text())  # the same code path as the CLI
    row = pd.read_parquet(run / "trials.parquet").set_index("number").loc[trial]
    assert card["run"]["trial"] == trial and card["accuracy"]["test"] == pytest.approx(row["test_accuracy"])
    labels = [b.label for b in at.get("download_button")]
    assert labels == [f"Download trial_{trial:04d}.onnx", "Download model_card.md"]


def test_the_top_level_entry_shows_the_run_named_on_its_command_line(small_run, monkeypatch, tmp_path) -> None:
    """``streamlit run app/explorer.py -- RUN_DIR`` (the design card's entry, thin over the
    package's page) renders that run, with no environment pointing at it."""
    from streamlit.testing.v1 import AppTest

    entry = ROOT / "app" / "explorer.py"
    monkeypatch.delenv("AUTOCOMPRESS_RUN", raising=False)
    monkeypatch.setenv("AUTOCOMPRESS_RUNS_DIR", str(tmp_path))  # an empty folder: the run comes from argv
    monkeypatch.setattr(sys, "argv", [str(entry), str(small_run)])  # what `streamlit run F -- RUN_DIR` passes
    at = AppTest.from_file(str(entry), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == f"Run {small_run.name}"
    assert {m.label: m.value for m in at.metric}["Trials done"] == "5 / 5"
    assert _caption(at).startswith("5 of 5 candidates")
    at.run()  # a rerun (what any widget change does) renders the page again
    assert not at.exception and at.title[0].value == f"Run {small_run.name}"


def test_status_marks_the_accuracy_latency_front_and_counts_the_far_below() -> None:
    from tests.test_results import _search_frame

    trials = _search_frame()
    cands = logic.candidates(trials)
    status = dict(zip(cands["number"], cands["status"]))
    assert status == {0: "front", 1: "front", 7: "front", 2: "Pareto", 3: "Pareto", 4: "Pareto",
                      5: "dominated", 6: "over budget"}  # fmt: skip
    assert list(logic.table(cands)["trial"][:3]) == [0, 1, 7]  # the front first, most accurate first
    s = logic.summary({"budget_ms": 2.0}, trials)
    assert (s["front"], s["pareto"], s["far_below"]) == (3, 6, 2)
    assert s["far_below_note"].startswith("far below the best (more than 5 pp under 92.00%): 2 candidates")
    wide = logic.summary({"budget_ms": 2.0, "accuracy_window_pp": 15}, trials)  # the run's window
    assert (wide["front"], wide["far_below"], wide["far_below_note"]) == (5, 0, None)
    assert set(logic.candidates(trials, 15.0).query("status == 'front'")["number"]) == {0, 1, 3, 4, 7}
    assert logic.summary({}, pd.DataFrame())["far_below_note"] is None
