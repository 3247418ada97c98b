"""Contract test: every shipped target's table loads, is labelled, and prices every shipped space."""

import pytest

from autocompress.arch import all_blocks, block_precisions, plan
from autocompress.exceptions import TargetError
from autocompress.hardware.lut import BlockKey
from autocompress.hardware.predict import predict
from autocompress.hardware.targets import get_target, list_targets
from autocompress.space import load_space

TARGETS = [t.name for t in list_targets()]


def test_shipped_targets() -> None:
    assert {"jetson-orin-nano", "x86-cpu-onnxruntime"} <= set(TARGETS)
    assert get_target("jetson").name == "jetson-orin-nano"
    assert get_target("JETSON").name == "jetson-orin-nano"
    assert get_target("cpu").name == "x86-cpu-onnxruntime"


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_covers_the_shipped_spaces(name: str) -> None:
    target = get_target(name)
    table = target.table
    assert len(table.rows) > 0
    label = target.source_label
    if target.estimated:
        assert "estimated" in label and "not measured" in label
        assert all(r.source == "estimated" for r in table.rows.values())
    else:
        assert label.startswith("measured")
        assert table.device.host.get("cpu") and table.device.host.get("threads")
    for space_name in ("fashion_mnist", "tiny"):
        space = load_space(space_name)
        for block in all_blocks(space, 1, 10):
            for prec in ("fp32", "int8"):
                if prec in table.device.precisions:
                    assert table.get(BlockKey.of(block, prec)) is not None, (name, block, prec)


@pytest.mark.parametrize("name", TARGETS)
def test_latency_is_overhead_plus_scaled_blocks(name: str) -> None:
    table = get_target(name).table
    space = load_space("fashion_mnist")
    cand = space.largest()
    blocks = plan(cand, space, 1, 10)
    precs = block_precisions(cand, space, blocks)
    pred = predict(table, blocks, precs)
    dev = table.device
    expected = dev.overhead_ms + sum(dev.scale(p) * table.get(BlockKey.of(b, p)).latency_ms for b, p in zip(blocks, precs))
    assert pred.latency_ms == pytest.approx(expected)
    assert pred.interpolated == 0 and len(pred.breakdown) == len(blocks)
    small = space.smallest()
    sb = plan(small, space, 1, 10)
    assert predict(table, sb, block_precisions(small, space, sb)).latency_ms < pred.latency_ms


def test_unknown_target_suggests_close_names() -> None:
    with pytest.raises(TargetError, match="did you mean jetson"):
        get_target("jetsn")
    with pytest.raises(TargetError, match="unknown target 'zzzz'.*known:"):
        get_target("zzzz")
