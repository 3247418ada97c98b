"""Latency intervals in a search's results: the budget on the interval's upper end
(``--budget-on upper``), ``--resume`` keeping it, and the interval in report.md, the explorer's
chart and the model card; runs written before the columns existed still load."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from autocompress.app import logic
from autocompress.exceptions import RunDirError
from autocompress.export import _interval_cell
from autocompress.hardware.interval import NO_BAND, interval_columns
from autocompress.hardware.layer_predict import predict_layers
from autocompress.hardware.layer_table import load_layers
from autocompress.hardware.onnx_layers import extract_layers
from autocompress.hardware.targets import TABLES_DIR, get_target
from autocompress.results import (
    CONFIG_FILE,
    STUDY_FILE,
    interval_line,
    plot_pareto,
    render_report,
    trials_frame,
)
from autocompress.search.config import DIRECTIONS, SearchConfig
from autocompress.search.study import prepare_run_dir
from autocompress.search.trial import constraint_values
from tests.hardware.layer_nets import dense_net

BAND = {"fp32": {"lo_pct": -10.0, "hi_pct": 25.0, "coverage": 0.8333, "n": 24, "basis": "test: held-out networks"}}


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real network priced on a copy of an estimated table that records a band: the trial
    result a problem writes (latency with its interval)."""
    import torch

    root = tmp_path_factory.mktemp("interval")
    folder = root / "tables" / "raspberry-pi-5"
    shutil.copytree(TABLES_DIR / "raspberry-pi-5", folder)
    device = yaml.safe_load((folder / "device.yaml").read_text())
    device["error_band"] = BAND
    (folder / "device.yaml").write_text(yaml.safe_dump(device, sort_keys=False))
    path = root / "net.onnx"
    torch.onnx.export(dense_net().eval(), torch.zeros(1, 1, 28, 28), str(path), dynamo=False)
    mp = pytest.MonkeyPatch()
    mp.setenv("AUTOCOMPRESS_TABLES", str(root / "tables"))
    try:
        target = get_target("raspberry-pi-5")
    finally:
        mp.undo()
    layers, _ = extract_layers(path)
    precisions = ["fp32"] * len(layers)
    pred = predict_layers(target.device, load_layers(folder, target.device), layers, precisions)
    result = {"val_accuracy": 0.9, "latency_ms": pred.latency_ms, "size_bytes": 1000,
              **interval_columns(target.device, precisions, pred.latency_ms)}  # fmt: skip
    return {"result": result, "device": target.device}


def _feasible(result: dict, cfg: SearchConfig) -> bool:
    """Whether the trial is feasible in the run's trials table (a real Optuna study)."""
    study = optuna.create_study(directions=list(DIRECTIONS))
    trial = study.ask()
    trial.set_user_attr("result", result)
    for name, value in constraint_values(result, cfg).items():
        trial.set_constraint(name, value)
    study.tell(trial, [result["val_accuracy"], result["latency_ms"], result["size_bytes"]])
    frame = trials_frame(study)
    return bool(frame.loc[0, "feasible"]) and bool(frame.loc[0, "pareto"])


def test_budget_on_upper_bounds_the_interval_not_the_point(priced: dict) -> None:
    r = priced["result"]
    lat, hi = r["latency_ms"], r["latency_hi_ms"]
    assert hi == pytest.approx(lat * 1.25) and r["latency_lo_ms"] == pytest.approx(lat * 0.9)
    budget = (lat + hi) / 2  # the point fits, the upper end does not
    assert _feasible(r, SearchConfig(target="raspberry-pi-5", budget_ms=budget))
    assert not _feasible(r, SearchConfig(target="raspberry-pi-5", budget_ms=budget, budget_on="upper"))
    assert _feasible(r, SearchConfig(target="raspberry-pi-5", budget_ms=hi * 1.01, budget_on="upper"))


def test_resume_keeps_the_budget_rule(tmp_path: Path) -> None:
    """A run started before --budget-on existed bounded the point: resuming it with upper is refused."""
    run = tmp_path / "run"
    run.mkdir()
    (run / STUDY_FILE).write_bytes(b"SQLite format 3\x00" + bytes(84))
    from autocompress import __version__

    (run / CONFIG_FILE).write_text(yaml.safe_dump({"autocompress_version": __version__, "target": "t",
                                                   "budget_ms": 5.0, "space_fingerprint": "fp", "seed": 0}))  # fmt: skip
    base = {"target": "t", "budget_ms": 5.0, "run_dir": run, "resume": True}
    assert prepare_run_dir(SearchConfig(**base), "t", "fp") == run
    with pytest.raises(RunDirError, match="budget_on='point', not 'upper'"):
        prepare_run_dir(SearchConfig(**base, budget_on="upper"), "t", "fp")


def _trials(with_interval: bool) -> pd.DataFrame:
    rows = [
        {"number": 0, "state": "COMPLETE", "val_accuracy": 0.9, "test_accuracy": 0.89, "latency_ms": 0.8,
         "size_bytes": 120_000, "params": 30_000, "feasible": True, "pareto": True, "candidate": "a"},
        {"number": 1, "state": "COMPLETE", "val_accuracy": 0.8, "test_accuracy": 0.79, "latency_ms": 0.5,
         "size_bytes": 90_000, "params": 20_000, "feasible": True, "pareto": True, "candidate": "b"},
    ]  # fmt: skip
    if with_interval:
        for r in rows:
            r.update(latency_lo_ms=r["latency_ms"] * 0.9, latency_hi_ms=r["latency_ms"] * 1.25)
    return pd.DataFrame(rows)


def _config(with_band: bool) -> dict:
    return {"target": "raspberry-pi-5", "target_label": "estimated (roofline)", "target_estimated": True,
            "budget_ms": 1.0, "supernet": {}, **({"latency_error_band": BAND, "budget_on": "upper"} if with_band else {})}  # fmt: skip


def test_report_shows_each_interval_and_what_it_rests_on(tmp_path: Path) -> None:
    trials = _trials(True)
    text = render_report(tmp_path, trials, trials, _config(True))
    assert "0.800 ms* [0.720 ms – 1.00 ms]" in text
    assert "test: held-out networks" in text and "the budget bounds the upper end of the interval" in text
    old = _trials(False)  # a run written before intervals: no range, and says none is on record
    text = render_report(tmp_path, old, old, _config(False))
    assert "| 0.800 ms* |" in text and NO_BAND in text and "the budget bounds the predicted latency" in text


def _below(trials: pd.DataFrame) -> pd.DataFrame:
    """Intervals wholly below their points, as an AGX Orin fp16 band (-21.9%..-1.0%) gives: the
    held-out figures were all predicted too slow."""
    return trials.assign(latency_lo_ms=trials["latency_ms"] * 0.781, latency_hi_ms=trials["latency_ms"] * 0.99)


def test_pareto_plot_draws_intervals_and_old_runs_still_plot(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    drawn = []
    real = plt.Axes.hlines
    try:
        plt.Axes.hlines = lambda self, y, lo, hi, **k: drawn.append((list(lo), list(hi))) or real(self, y, lo, hi, **k)  # type: ignore[method-assign]  # fmt: skip
        plot_pareto(_trials(True), _config(True), tmp_path / "with.png")
        plot_pareto(_trials(False), _config(False), tmp_path / "old.png")
        plot_pareto(_below(_trials(True)), _config(True), tmp_path / "below.png")  # raised ValueError once
    finally:
        plt.Axes.hlines = real  # type: ignore[method-assign]
    for name in ("with", "old", "below"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    (lo, hi), (lo_below, hi_below) = drawn  # one set of segments per run with intervals; none for the old run
    assert sorted(lo) == pytest.approx([0.45, 0.72]) and sorted(hi) == pytest.approx([0.625, 1.0])
    assert sorted(lo_below) == pytest.approx([0.3905, 0.6248]) and sorted(hi_below) == pytest.approx([0.495, 0.792])


def test_explorer_draws_each_interval_from_its_ends() -> None:
    fig = logic.pareto_figure(logic.candidates(_trials(True)), _config(True))
    (trace,) = [t for t in fig.data if t.name == "latency interval"]
    ends = sorted(v for pair in zip(trace.x[0::3], trace.x[1::3], strict=True) for v in pair)
    assert ends == pytest.approx([0.45, 0.625, 0.72, 1.0])  # (0.45, 0.625) and (0.72, 1.0)
    assert sorted(trace.y[0::3]) == pytest.approx([80.0, 90.0])  # at each point's accuracy
    below = logic.pareto_figure(logic.candidates(_below(_trials(True))), _config(True))
    (trace,) = [t for t in below.data if t.name == "latency interval"]
    assert max(v for v in trace.x if v is not None) == pytest.approx(0.792)  # wholly left of the 0.8 ms point
    old = logic.pareto_figure(logic.candidates(_trials(False)), _config(False))
    assert not [t for t in old.data if t.name == "latency interval"]
    assert logic.latency_interval_segments(logic.candidates(_trials(True)), "size") is None


def test_model_card_interval_row() -> None:
    assert _interval_cell({"latency_interval_ms": [0.72, 1.0], "latency_interval": "latency interval: x"}) == \
        "0.720 ms – 1.00 ms; x"
    assert _interval_cell({}) == NO_BAND  # a card of a run written before intervals


def test_one_model_is_described_by_the_bands_its_interval_came_from() -> None:
    """A model card or the explorer's trial caption names the band of the model's own precisions,
    not every precision's band of the run (which report.md and the CLI list)."""
    int8 = {"lo_pct": -4.0, "hi_pct": 6.0, "coverage": 0.8, "n": 20, "basis": "test: int8 networks"}
    cfg = {"latency_error_band": {**BAND, "int8": int8}}
    fp32_only = interval_line(cfg, "fp32")
    assert "fp32: 20 of 24 held-out errors within -10.0%..+25.0%" in fp32_only and "int8" not in fp32_only
    mixed = interval_line(cfg, "fp32+int8")
    assert "fp32: " in mixed and "int8: 16 of 20 held-out errors within -4.0%..+6.0%" in mixed
    for whole_run in (None, float("nan"), ""):  # the run's line, or a row written before the column
        assert interval_line(cfg, whole_run) == mixed
    everything = {"all": {**int8, "basis": "test: every precision"}}
    assert interval_line({"latency_error_band": everything}, "fp16").startswith("latency interval: all: 16 of 20")
    # a precision with neither its own band nor an all-precision one: the run's bands, nothing invented
    assert interval_line(cfg, "fp16") == mixed
    assert NO_BAND in interval_line({}, "fp32")
