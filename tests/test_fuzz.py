"""Property tests: whatever a user or a file gives the parsers, the result is a valid object or
one of our own errors (AutoCompressError), never another exception."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autocompress.exceptions import AutoCompressError
from autocompress.hardware.lut import COLUMNS, LatencyTable, load_table
from autocompress.space import SearchSpace, load_space, space_from_dict
from autocompress.units import parse_budget, parse_size

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "hw_latency_tables" / "x86-cpu-onnxruntime"
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

number = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e999", "-0", ".5", "5.", "1e-999", "nan", "inf", "０", "٣", "1_0", "0x10"]),
)
unit = st.sampled_from(["", "ms", "us", "µs", "s", "MS", "min", "kb", "KB", "MiB", "b", "gb", " ms", "ms "])
budget_like = st.one_of(st.text(max_size=20), st.builds(lambda n, s, u: f"{n}{s}{u}", number,
                                                       st.sampled_from(["", " ", "\t", "  "]), unit))  # fmt: skip


@FAST
@given(budget_like)
def test_parse_budget_gives_a_positive_finite_time_or_our_error(text: str) -> None:
    try:
        ms = parse_budget(text)
    except AutoCompressError as exc:
        assert "budget must be" in str(exc) and "\n" not in str(exc)
        return
    assert isinstance(ms, float) and math.isfinite(ms) and ms > 0


@FAST
@given(budget_like)
def test_parse_size_gives_at_least_one_byte_or_our_error(text: str) -> None:
    try:
        n = parse_size(text)
    except AutoCompressError as exc:
        assert "size must be" in str(exc) and "\n" not in str(exc)
        return
    assert isinstance(n, int) and n >= 1


# ----------------------------------------------------------------------------- spaces

scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 40), st.floats(-2, 40), st.sampled_from([math.nan, math.inf, -math.inf]),
                   st.sampled_from(["fp32", "int8", "fp16", "l2", "x", "", "3"]))  # fmt: skip
choice_list = st.lists(scalar, max_size=4)
yamlish = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)  # fmt: skip
TINY = yaml.safe_load((ROOT / "search_spaces" / "tiny.yaml").read_text())


def _mutated_tiny(draw: st.DrawFn) -> object:
    """The tiny space with a few values replaced by arbitrary ones (reaches deep validators)."""
    space = yaml.safe_load(yaml.safe_dump(TINY))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(["input", "stem", "stages", "compression", "training", "top"]))
        if section == "top":
            space[draw(st.sampled_from(["name", "dataset", "extra", "stages"]))] = draw(yamlish)
        elif section == "stages":
            stage = space["stages"][draw(st.integers(0, len(space["stages"]) - 1))] if isinstance(
                space["stages"], list) and space["stages"] else {}  # fmt: skip
            if isinstance(stage, dict):
                key = draw(st.sampled_from(["depth", "width", "kernel", "expand", "stride", "precision", "bogus"]))
                stage[key] = draw(st.one_of(choice_list, scalar))
        elif isinstance(space.get(section), dict):
            key = draw(st.sampled_from(sorted(space[section]) + ["bogus"]))
            space[section][key] = draw(st.one_of(choice_list, scalar, yamlish))
    return space


mutated_space = st.composite(_mutated_tiny)()


def _check_space(raw: object) -> None:
    try:
        space = space_from_dict(raw)
    except AutoCompressError as exc:
        assert str(exc)
        return
    assert isinstance(space, SearchSpace)
    # a space that loads is usable: extremes and its dimensions exist, hashing works
    assert space.size() >= 1 and space.largest() and space.smallest()
    assert len(space.arch_fingerprint()) == 16


@SLOW
@given(st.one_of(mutated_space, yamlish))
def test_space_from_any_mapping_is_a_space_or_our_error(raw: object) -> None:
    _check_space(raw)


@SLOW
@given(st.text(max_size=200))
def test_space_from_any_text_is_a_space_or_our_error(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("space") / "s.yaml"
    path.write_text(text)
    try:
        space = load_space(path)
    except AutoCompressError:
        return
    assert isinstance(space, SearchSpace)


# ----------------------------------------------------------------------------- latency tables

CSV_HEADER = ",".join(COLUMNS)
csv_cell = st.one_of(st.sampled_from(["mbconv", "stem", "head", "fp32", "int8", "measured", "relu", "1", "0",
                                      "-1", "nan", "inf", "1e999", "0.01", "", "x", '"', "2.5"]),
                     st.text(max_size=5))  # fmt: skip
csv_row = st.lists(csv_cell, min_size=13, max_size=16).map(",".join)
table_text = st.one_of(
    st.text(max_size=300),
    st.lists(csv_row, max_size=5).map(lambda rows: "\n".join([CSV_HEADER, *rows]) + "\n"),
)


@SLOW
@given(csv=table_text)
def test_table_from_any_csv_is_a_table_or_our_error(tmp_path_factory, csv: str) -> None:
    folder = tmp_path_factory.mktemp("table")
    shutil.copy(TABLE / "device.yaml", folder / "device.yaml")
    (folder / "blocks.csv").write_text(csv)
    try:
        table = load_table(folder)
    except AutoCompressError:
        return
    assert isinstance(table, LatencyTable) and table.rows
    assert all(math.isfinite(r.latency_ms) and r.latency_ms > 0 for r in table.rows.values())


DEVICE = yaml.safe_load((TABLE / "device.yaml").read_text())


@st.composite
def mutated_device(draw: st.DrawFn) -> str:
    device = dict(DEVICE)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(device) + ["bogus"]))
        device[key] = draw(st.one_of(scalar, choice_list, yamlish))
    return yaml.safe_dump(device)


@SLOW
@given(device=st.one_of(st.text(max_size=300), mutated_device()))
def test_table_from_any_device_yaml_is_a_table_or_our_error(tmp_path_factory, device: str) -> None:
    folder = tmp_path_factory.mktemp("table")
    (folder / "device.yaml").write_text(device)
    shutil.copy(TABLE / "blocks.csv", folder / "blocks.csv")
    try:
        load_table(folder)
    except AutoCompressError:
        return
