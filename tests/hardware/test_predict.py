"""How a network's latency is assembled from a table: entries into int8, fitted block factors."""

import pytest

from autocompress.arch import BlockSpec
from autocompress.hardware.lut import BlockKey, DeviceSpec, LatencyTable, Row
from autocompress.hardware.predict import predict
from autocompress.hardware.pricing import precision_entries


def test_entering_int8_is_counted_once_per_entry() -> None:
    assert precision_entries(["fp32", "fp32"]) == 0
    assert precision_entries(["fp32", "int8", "int8", "fp32"]) == 1  # leaving is free
    assert precision_entries(["int8", "fp32", "int8"]) == 2  # the input is quantized too


def _table(scale: float | dict[str, float]) -> tuple[LatencyTable, list[BlockSpec]]:
    blocks = [BlockSpec("stem", 16, 16, 1, 8, 3, 1, 1.0, "relu", -1), BlockSpec("head", 16, 16, 8, 10, 1, 1, 1.0, "none", 1)]
    rows = {}
    for b in blocks:
        for p, ms in (("fp32", 0.2), ("int8", 0.1)):
            key = BlockKey.of(b, p)
            rows[key] = Row(key, ms, 0.0, None, "measured")
    dev = DeviceSpec(name="t", description="test", source="measured", runtime="onnxruntime", precisions=["fp32", "int8"],
                     overhead_ms=0.05, transition_ms=0.01, block_scale=scale)  # fmt: skip
    return LatencyTable(device=dev, rows=rows, folder=None), blocks  # type: ignore[arg-type]


def test_block_factors_apply_per_precision() -> None:
    table, blocks = _table({"fp32": 0.5, "int8": 2.0})
    pred = predict(table, blocks, ["fp32", "int8"])
    assert pred.latency_ms == pytest.approx(0.05 + 0.01 + 0.5 * 0.2 + 2.0 * 0.1)
    assert [c.latency_ms for c in pred.breakdown] == pytest.approx([0.1, 0.2])
    plain, _ = _table(1.0)
    assert predict(plain, blocks, ["fp32", "fp32"]).latency_ms == pytest.approx(0.05 + 0.4)
