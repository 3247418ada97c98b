"""Which budgets bind: a space's predicted latency range (``autocompress space``) and the one
line a CLI, report and explorer show when a search's budget excludes no candidate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from autocompress import budget
from autocompress.budget import (
    LatencyRange,
    below_fastest_message,
    binding_budget,
    budget_message,
    non_binding_message,
    precision_ranges,
    space_latency_range,
)
from autocompress.hardware.targets import get_target
from autocompress.space import load_space
from tests.helpers import assert_one_line_error, cli, cpu_table_as_searched, tiny_mid_budget_us


def test_the_range_spans_the_smallest_and_largest_networks_at_every_precision() -> None:
    space, target = load_space("tiny"), get_target("jetson")
    rng = space_latency_range(space, target.table, channels=1, classes=10, target=target.name, estimated=True)
    rows = precision_ranges(space, target.table, channels=1, classes=10)
    assert 0 < rng.min_ms < rng.max_ms
    assert [r.precision for r in rows] == list(target.device.precisions)  # fp16 too: the Jetson runs it
    offered = [r for r in rows if r.in_space]
    assert {r.precision for r in offered} == {"fp32", "int8"}
    assert rng.min_ms <= min(r.min_ms for r in offered) and rng.max_ms >= max(r.max_ms for r in offered)
    # the mid budget of the measured CPU table (as a search here prices with it, re-calibrated to
    # this machine) binds there; a budget above the slowest does not
    cpu = space_latency_range(space, cpu_table_as_searched(), channels=1, classes=10)
    assert cpu.binds(tiny_mid_budget_us() / 1000) and not cpu.binds(cpu.max_ms) and cpu.binds(cpu.max_ms * 0.99)


def test_the_message_names_the_range_the_label_and_a_budget_that_binds() -> None:
    rng = LatencyRange(min_ms=0.53, max_ms=1.10, target="jetson-orin-nano", estimated=True)
    entry = rng.to_config(10.0)
    assert entry == {"min_ms": 0.53, "max_ms": 1.1, "binds": False, "feasible": True, "estimated": True, "exact": False}
    msg = non_binding_message(10.0, entry, "jetson-orin-nano")
    assert msg is not None and "\n" not in msg
    # a range searched for (not every candidate priced) says so
    for part in ("budget 10 ms likely does not bind on jetson-orin-nano", "predicted 0.530–1.10 ms (ESTIMATED)",
                 "not every candidate was priced", "e.g. 0.82 ms"):  # fmt: skip
        assert part in msg, (part, msg)
    exact = non_binding_message(10.0, {**entry, "exact": True}, "jetson-orin-nano")
    assert exact is not None and "every candidate of this space is predicted 0.530–1.10 ms" in exact
    assert non_binding_message(0.8, rng.to_config(0.8), "jetson-orin-nano") is None  # it binds
    assert non_binding_message(10.0, None, "x") is None  # older runs recorded no range
    assert non_binding_message(10.0, {"binds": False, "min_ms": "?"}, "x") is None  # a hand-edited config
    assert binding_budget(0.53, 1.10) == 0.82 and binding_budget(5, 30) == 18 and binding_budget(0.012, 0.3) == 0.16


def test_explorer_logic_says_when_the_budget_does_not_bind() -> None:
    from autocompress.app import logic

    config = {"target": "jetson-orin-nano", "budget_ms": 10.0,
              "latency_range": {"min_ms": 0.53, "max_ms": 1.1, "binds": False, "estimated": True}}  # fmt: skip
    note = logic.budget_note(config)
    assert note is not None and "does not bind" in note and "ESTIMATED" in note
    assert logic.budget_note({**config, "latency_range": {**config["latency_range"], "binds": True}}) is None
    assert logic.budget_note({k: v for k, v in config.items() if k != "latency_range"}) is None
    assert logic.budget_note({}) is None


def test_a_budget_on_the_upper_end_is_not_said_not_to_bind_when_upper_ends_exceed_it() -> None:
    """``--budget-on upper --budget 0.6ms`` on jetson (tiny space 0.426-0.545 ms, fp32 band up to
    +40.5%): 4 of 6 trials were over budget, and the CLI, report and explorer said "budget 0.6 ms
    does not bind ... every candidate of this space is predicted 0.426–0.545 ms"."""
    from autocompress.app import logic
    from autocompress.results import render_report

    band = {p: {"lo_pct": lo, "hi_pct": hi, "n": 6, "coverage": 1.0, "basis": "held out"}
            for p, lo, hi in (("all", -18.7, 36.3), ("fp32", 1.6, 40.5))}
    config = {"target": "jetson-orin-nano", "budget_ms": 0.6, "budget_on": "upper", "latency_error_band": band,
              "latency_range": {"min_ms": 0.426, "max_ms": 0.545, "binds": False, "estimated": True}}  # fmt: skip
    assert logic.budget_note(config) is None
    trials = pd.DataFrame({"number": [0], "state": "COMPLETE", "val_accuracy": 0.5, "test_accuracy": 0.5,
                           "latency_ms": 0.545, "size_bytes": 1000, "params": 1, "macs": 1, "feasible": False,
                           "pareto": False, "candidate": "c"})  # fmt: skip
    assert "does not bind" not in render_report(Path("run"), trials, trials.iloc[0:0], config)
    # far above the slowest upper end (0.545 ms + 40.5%), it does not bind, as on the point
    assert "does not bind" in logic.budget_note({**config, "budget_ms": 5.0})
    assert "does not bind" in logic.budget_note({**config, "budget_on": "point"})
    assert logic.budget_note({**config, "latency_error_band": None}) is None  # no band: the upper ends are unknown


@pytest.fixture(scope="module")
def jetson_json() -> dict:
    proc = cli("space", "tiny", "--target", "jetson", "--budget", "10ms", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_space_command_json(jetson_json: dict) -> None:
    doc = jetson_json
    assert doc["space"] == "tiny" and doc["target"] == "jetson-orin-nano" and doc["estimated"] is True
    assert doc["size"] == load_space("tiny").size()
    assert 0 < doc["range"]["min_ms"] < doc["range"]["binding_example_ms"] < doc["range"]["max_ms"]
    assert {p["precision"] for p in doc["precisions"]} == {"fp32", "fp16", "int8"}
    assert doc["budget"]["binds"] is False and "does not bind" in doc["budget"]["message"]


def test_space_command_table(tmp_path) -> None:
    proc = cli("space", "fashion_mnist", "--target", "jetson")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"{load_space('fashion_mnist').size():,} candidates" in text
    assert "jetson-orin-nano (ESTIMATED)" in text
    for row in ("all fp32", "all fp16", "all int8", "the space (any mix)", "budgets between"):
        assert row in text, row
    cpu = cli("space", "tiny")  # default target: the CPU table measured on this machine
    assert cpu.returncode == 0 and "x86-cpu-onnxruntime" in cpu.stdout and "ESTIMATED" not in cpu.stdout
    # a space whose blocks the measured table lacks (a larger resolution): the command says they are interpolated
    import yaml

    from autocompress.space import SPACES_DIR

    raw = yaml.safe_load((SPACES_DIR / "tiny.yaml").read_text())
    raw["input"]["resolution"] = [64]
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(raw))
    proc = cli("space", str(big), "--target", "cpu")
    assert proc.returncode == 0 and "block rows this space needs are not in x86-cpu-onnxruntime's table" in proc.stdout
    assert "block rows this space needs" not in cpu.stdout  # the tiny space's own rows are all there
    # a budget that binds on an estimated target: the verdict says the figures are estimates too
    rpi = cli("space", "tiny", "--target", "rpi4", "--budget", "0.45ms")
    assert "budget 0.450 ms binds on raspberry-pi-4: it excludes the candidates predicted above it (ESTIMATED)" in rpi.stdout


def test_a_one_candidate_space_says_so(tmp_path) -> None:
    """A space of one-element lists once read "1 candidates" and "budgets between 0.426 ms and
    0.426 ms bind (e.g. --budget 0.43ms)"."""
    import yaml

    from autocompress.space import SPACES_DIR

    raw = yaml.safe_load((SPACES_DIR / "tiny.yaml").read_text())
    raw["input"]["resolution"] = [12]
    raw["stages"] = [{**st, "depth": [1], "width": [st["width"][0]], "kernel": [3]} for st in raw["stages"]]
    raw["compression"].update(prune_ratio=[0.0], precision=["fp32"], kd_alpha=[0.0], finetune_steps=[0])
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump(raw))
    proc = cli("space", str(one), "--target", "jetson", "--budget", "1ms")
    assert proc.returncode == 0, proc.stderr
    assert ": 1 candidate;" in proc.stdout and "1 candidates" not in proc.stdout
    assert "budgets between" not in proc.stdout and "would trade accuracy" not in proc.stdout
    assert "no budget binds: from " in proc.stdout and "the candidate: r12 s8" in proc.stdout


def test_space_on_a_table_from_another_machine_shows_what_a_search_here_would(tmp_path) -> None:
    """The shipped CPU table was profiled on another machine: with no fit of it on this one,
    `space` says its figures are that machine's; once a search (here: the tests' own fit) has
    re-calibrated it, `space` prices with that fit, and its label says so."""
    fresh = cli("space", "tiny", "--target", "cpu", env={"AUTOCOMPRESS_CACHE": str(tmp_path / "cache")})
    assert fresh.returncode == 0 and "these are the figures of the machine the table was profiled on" in fresh.stdout
    cpu_table_as_searched()  # fits the table to this machine in the session's cache, as a search does
    fitted = cli("space", "tiny", "--target", "cpu")
    assert "re-calibrated to this machine" in fitted.stdout and "figures of the machine" not in fitted.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["nosuchspace", "-t", "cpu"], "search space nosuchspace"), (["tiny", "-t", "nosuchdevice"], "nosuchdevice"),
     (["tiny", "--budget", "10"], "has no unit"), (["tiny", "--classes", "1"], "--classes must be")],
)  # fmt: skip
def test_space_command_bad_input_is_one_line(args: list[str], fragment: str) -> None:
    assert_one_line_error(cli("space", *args), 2, fragment)


def _brute_force(space, table) -> tuple[float, float]:
    """Every candidate of the space priced, one by one."""
    import itertools

    from autocompress.space import Candidate
    from tests.helpers import tiny_latency_ms

    dims = space.dimensions()
    lat = [tiny_latency_ms(Candidate.from_flat(dict(zip(dims, v))), space, table)
           for v in itertools.product(*dims.values())]  # fmt: skip
    return min(lat), max(lat)


def test_the_range_of_a_small_space_is_every_candidate_priced() -> None:
    """On the OpenVINO table the one-choice-at-a-time refinement stopped at a local optimum (the
    space's range 0.029-0.049 ms while its all-int8 largest network took 0.051 ms): a space of
    512 distinct networks is enumerated, and its range is the brute force one."""
    space, target = load_space("tiny"), get_target("openvino")
    rng = space_latency_range(space, target.table, channels=1, classes=10)
    lo, hi = _brute_force(space, target.table)
    assert rng.exact and (rng.min_ms, rng.max_ms) == pytest.approx((lo, hi), rel=1e-12)
    assert round(lo, 5) == 0.02824 and round(hi, 5) == 0.05051
    rows = [r for r in precision_ranges(space, target.table, channels=1, classes=10) if r.in_space]
    assert rng.min_ms <= min(r.min_ms for r in rows) and rng.max_ms >= max(r.max_ms for r in rows)
    # 0.05 ms binds (a candidate is slower), 0.0285 ms fits one (a candidate is faster)
    assert rng.binds(0.05) and rng.feasible(0.0285) and not rng.feasible(0.028)


def test_a_range_searched_for_covers_the_one_precision_extremes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond MAX_NETWORKS the range is searched for: it is labelled so, and it holds at least the
    smallest and largest network of each precision the space offers on every stage."""
    monkeypatch.setattr(budget, "MAX_NETWORKS", 0)
    space, target = load_space("tiny"), get_target("openvino")
    rng = space_latency_range(space, target.table, channels=1, classes=10)
    rows = [r for r in precision_ranges(space, target.table, channels=1, classes=10) if r.in_space]
    assert not rng.exact
    assert rng.min_ms <= min(r.min_ms for r in rows) and rng.max_ms >= max(r.max_ms for r in rows)
    lo, hi = _brute_force(space, target.table)
    assert lo - 1e-12 <= rng.min_ms and rng.max_ms <= hi + 1e-12  # never outside the true range


def test_a_budget_below_the_fastest_candidate_is_said_before_and_after_the_search(tmp_path) -> None:
    from autocompress.app import logic
    from autocompress.results import render_report
    from tests.test_results import _frame

    rng = LatencyRange(min_ms=0.223, max_ms=0.279, target="jetson-agx-orin", estimated=True, exact=True)
    entry = rng.to_config(0.2)
    assert entry["feasible"] is False and entry["binds"] is True
    before = below_fastest_message(0.2, entry, "jetson-agx-orin", when="before")
    assert before == ("no candidate of this space is predicted under 0.200 ms on jetson-agx-orin (the fastest: "
                      "0.223 ms (ESTIMATED)); the search will find nothing feasible — raise --budget to at least "
                      "0.223 ms")  # fmt: skip
    after = budget_message(0.2, entry, "jetson-agx-orin")
    assert after is not None and "below the fastest candidate" in after and "more trials will not help" in after
    assert budget_message(0.25, rng.to_config(0.25), "x") is None  # binds and fits: nothing to say
    guess = below_fastest_message(0.2, {**entry, "exact": False}, "x", when="before")
    assert guess is not None and "likely find nothing" in guess and "fastest found" in guess
    config = {"target": "jetson-agx-orin", "budget_ms": 0.2, "trials": 4, "space_path": "tiny.yaml",
              "latency_range": entry, "supernet": {}}  # fmt: skip
    note = logic.budget_note(config)
    assert note is not None and "below the fastest candidate" in note
    trials = _frame()
    text = render_report(tmp_path, trials, trials.iloc[0:0], config)
    assert "below the fastest candidate" in text.split("## Accuracy")[0]
    assert "--resume" not in text and "--budget 0.223ms" in text  # no more trials: a budget that fits


def test_search_refuses_a_budget_below_every_candidate_before_any_training(tmp_path, fashion_dir) -> None:
    """Every candidate of the tiny space is priced: no trial could meet 0.2 ms on the AGX Orin,
    so the search is refused (exit 2) before a supernet is trained or a run directory made."""
    run = tmp_path / "run"
    proc = cli("search", "--space", "tiny", "--target", "agx-orin", "--budget", "0.2ms", "--subset", "300",
               "--trials", "2", "--run-dir", str(run))  # fmt: skip
    assert_one_line_error(proc, 2, "no candidate of this space is predicted under 0.200 ms on jetson-agx-orin")
    assert "raise --budget to at least 0.238 ms" in proc.stderr and not run.exists()


def test_a_budget_below_a_range_searched_for_is_a_warning_before_the_trials() -> None:
    from autocompress.search.config import Hooks
    from autocompress.search.run import _check_budget_range

    class Problem:
        range_final_after_check = True

        def __init__(self, exact: bool) -> None:
            self.exact = exact

        def latency_range(self) -> LatencyRange:
            return LatencyRange(min_ms=0.223, max_ms=0.279, target="t", estimated=False, exact=self.exact)

    class Cfg:
        budget_ms = 0.2

    lines: list[str] = []
    _check_budget_range(Cfg(), Problem(exact=False), Hooks(note=lines.append))  # type: ignore[arg-type]
    assert len(lines) == 1 and lines[0].startswith("warning: no candidate found of this space")
    lines.clear()
    Cfg.budget_ms = 0.25
    _check_budget_range(Cfg(), Problem(exact=True), Hooks(note=lines.append))  # type: ignore[arg-type]
    assert lines == []
