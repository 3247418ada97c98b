"""int8 regions on the one pricing path: consecutive int8 entries do not pay the dequantize and
quantize between them (the runtime fuses them), and a region pays its entry (quantize) and exit
(dequantize) once; blocks and layers alike."""

from __future__ import annotations

import pytest

from autocompress.arch import BlockSpec
from autocompress.hardware.layer_predict import predict_layers
from autocompress.hardware.layer_table import LayerKey, LayerRow, LayerSpec, LayerTable
from autocompress.hardware.lut import BlockKey, DeviceSpec, EdgeCost, LatencyTable, Row
from autocompress.hardware.predict import predict

ENTRY = EdgeCost(fixed_ms=0.002, per_kelem_ms=0.001)
EXIT = EdgeCost(fixed_ms=0.003, per_kelem_ms=0.002)
BLOCKS = [BlockSpec("stem", 16, 16, 1, 8, 3, 1, 1.0, "relu", -1),
          BlockSpec("mbconv", 16, 16, 8, 16, 3, 2, 2.0, "relu", 0),
          BlockSpec("mbconv", 8, 8, 16, 16, 3, 1, 2.0, "relu", 0),
          BlockSpec("mbconv", 8, 8, 16, 24, 3, 2, 2.0, "relu", 1),
          BlockSpec("head", 4, 4, 24, 10, 1, 1, 1.0, "none", 1)]  # fmt: skip


def _device(fused: bool = True) -> DeviceSpec:
    edges = {"int8_entry": ENTRY, "int8_exit": EXIT} if fused else {}
    return DeviceSpec(name="t", description="test", source="measured", runtime="onnxruntime",
                      precisions=["fp32", "int8"], overhead_ms=0.05, transition_ms=0.01, **edges)  # type: ignore[arg-type]  # fmt: skip


def _table(device: DeviceSpec) -> LatencyTable:
    rows = {}
    for i, b in enumerate(BLOCKS):
        for p, ms in (("fp32", 0.1 + 0.01 * i), ("int8", 0.06 + 0.01 * i)):
            rows[BlockKey.of(b, p)] = Row(BlockKey.of(b, p), ms, 0.0, None, "measured")
    return LatencyTable(device=device, rows=rows)


def _elems(b: BlockSpec) -> tuple[float, float]:
    return b.in_h * b.in_w * b.in_c, b.out_h * b.out_w * b.out_c


def test_an_int8_chain_is_cheaper_than_its_blocks_each_entering_and_leaving_int8() -> None:
    table = _table(_device())
    chain = predict(table, BLOCKS, ["fp32", "int8", "int8", "int8", "fp32"])
    rows = [table.rows[BlockKey.of(b, "int8")].latency_ms for b in BLOCKS[1:4]]
    # each block as its own region: quantize its input, run its row (timed with its output dequantize)
    separate = sum(ENTRY.ms(_elems(b)[0]) + r for b, r in zip(BLOCKS[1:4], rows))
    chain_int8 = chain.transitions_ms + sum(c.latency_ms for c in chain.breakdown[1:4])
    assert chain_int8 < separate
    saved = sum(ENTRY.ms(_elems(b)[0]) for b in BLOCKS[2:4]) + sum(EXIT.ms(_elems(b)[1]) for b in BLOCKS[1:3])
    assert separate - chain_int8 == pytest.approx(saved)


def test_entry_and_exit_are_paid_once_per_int8_region() -> None:
    table = _table(_device())
    pred = predict(table, BLOCKS, ["int8", "int8", "fp32", "int8", "fp32"])  # two regions
    want = (ENTRY.ms(_elems(BLOCKS[0])[0]) + EXIT.ms(_elems(BLOCKS[1])[1])
            + ENTRY.ms(_elems(BLOCKS[3])[0]) + EXIT.ms(_elems(BLOCKS[3])[1]))  # fmt: skip
    assert pred.transitions_ms == pytest.approx(want)
    # an int8 entry is its row less the output dequantize it was timed with; fp32 rows are as they are
    row = table.rows[BlockKey.of(BLOCKS[1], "int8")].latency_ms
    assert pred.breakdown[1].latency_ms == pytest.approx(row - EXIT.ms(_elems(BLOCKS[1])[1]))
    assert pred.breakdown[2].latency_ms == pytest.approx(table.rows[BlockKey.of(BLOCKS[2], "fp32")].latency_ms)
    assert pred.latency_ms == pytest.approx(0.05 + want + sum(c.latency_ms for c in pred.breakdown))
    all_fp32 = predict(table, BLOCKS, ["fp32"] * 5)
    assert all_fp32.transitions_ms == 0


def test_tables_without_fitted_edges_keep_the_per_entry_transition() -> None:
    pred = predict(_table(_device(fused=False)), BLOCKS, ["int8", "int8", "fp32", "int8", "fp32"])
    assert pred.transitions_ms == pytest.approx(2 * 0.01)


def test_layer_tables_price_int8_regions_the_same_way() -> None:
    keys = [LayerKey("conv", 16, 16, 1, 8, 3, 1, 1, "relu", "fp32"), LayerKey("conv", 16, 16, 8, 16, 3, 1, 1, "relu", "fp32"),
            LayerKey("conv", 16, 16, 16, 16, 3, 1, 1, "relu", "fp32")]  # fmt: skip
    rows = {}
    for k in keys:
        for p in ("fp32", "int8"):
            key = LayerKey(**{**k.__dict__, "precision": p})
            rows[key] = LayerRow(key, 0.05, 0.0, None, "measured")
    specs = [LayerSpec(k, (f"/n{i}/Conv",)) for i, k in enumerate(keys)]
    pred = predict_layers(_device(), LayerTable(rows), specs, ["fp32", "int8", "int8"])
    assert pred.transitions_ms == pytest.approx(ENTRY.ms(8 * 16 * 16) + EXIT.ms(16 * 16 * 16))
    assert pred.breakdown[1].latency_ms == pytest.approx(0.05 - EXIT.ms(16 * 16 * 16))
