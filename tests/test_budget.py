"""Which budgets bind: a space's predicted latency range (``autocompress space``) and the one
line a CLI, report and explorer show when a search's budget excludes no candidate."""

from __future__ import annotations

import json

import pytest

from autocompress.budget import (
    LatencyRange,
    binding_budget,
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
    assert entry == {"min_ms": 0.53, "max_ms": 1.1, "binds": False, "estimated": True}
    msg = non_binding_message(10.0, entry, "jetson-orin-nano")
    assert msg is not None and "\n" not in msg
    for part in ("budget 10 ms does not bind on jetson-orin-nano", "predicted 0.530–1.10 ms (ESTIMATED)", "e.g. 0.82 ms"):
        assert part in msg, (part, msg)
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


def test_space_command_table() -> None:
    proc = cli("space", "fashion_mnist", "--target", "jetson")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"{load_space('fashion_mnist').size():,} candidates" in text
    assert "jetson-orin-nano (ESTIMATED)" in text
    for row in ("all fp32", "all fp16", "all int8", "the space (any mix)", "budgets between"):
        assert row in text, row
    cpu = cli("space", "tiny")  # default target: the CPU table measured on this machine
    assert cpu.returncode == 0 and "x86-cpu-onnxruntime" in cpu.stdout and "ESTIMATED" not in cpu.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["nosuchspace", "-t", "cpu"], "search space nosuchspace"), (["tiny", "-t", "nosuchdevice"], "nosuchdevice"),
     (["tiny", "--budget", "10"], "has no unit"), (["tiny", "--classes", "1"], "--classes must be")],
)  # fmt: skip
def test_space_command_bad_input_is_one_line(args: list[str], fragment: str) -> None:
    assert_one_line_error(cli("space", *args), 2, fragment)
