"""The one pricing path: blocks and layers get the same transition and overhead costs, the same
interpolation (with a warning, never zero) and the same fitted per-precision scale."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autocompress.arch import BlockSpec
from autocompress.exceptions import UnpricedLayersError
from autocompress.hardware import layer_profile
from autocompress.hardware.layer_predict import predict_layers
from autocompress.hardware.layer_profile import Network, fit_layer_scale
from autocompress.hardware.layer_table import (
    LayerKey,
    LayerRow,
    LayerSpec,
    LayerTable,
    load_layers,
    save_layers,
)
from autocompress.hardware.lut import BlockKey, DeviceSpec, LatencyTable, Row, load_device, save_device
from autocompress.hardware.predict import predict
from autocompress.hardware.scale import Timed, fit_scales, store_scale, unit_scale
from autocompress.runtime import Timing

PRECS = ["int8", "fp32", "int8", "int8"]  # enters int8 at the input and once more


def _device(**kw: object) -> DeviceSpec:
    return DeviceSpec(name="t", description="test", source="measured", runtime="onnxruntime",
                      precisions=["fp32", "int8"], overhead_ms=0.05, transition_ms=0.01, **kw)  # type: ignore[arg-type]  # fmt: skip


def _conv(in_c: int, out_c: int, size: int = 16) -> LayerKey:
    return LayerKey("conv", size, size, in_c, out_c, 3, 1, 1, "relu", "fp32")


def _layer_table(keys: list[LayerKey], ms_per_mmac: float = 1.0) -> LayerTable:
    rows = {}
    for k in keys:
        for p, factor in (("fp32", 1.0), ("int8", 0.5)):
            key = LayerKey(**{**k.__dict__, "precision": p})
            ms = 0.01 + factor * ms_per_mmac * key.macs() / 1e6
            rows[key] = LayerRow(key, ms, 0.0, None, "measured")
    return LayerTable(rows)


def _specs(keys: list[LayerKey]) -> list[LayerSpec]:
    return [LayerSpec(k, (f"/n{i}/Conv",)) for i, k in enumerate(keys)]


def test_blocks_and_layers_get_the_same_transition_and_overhead_costs() -> None:
    dev = _device()
    blocks = [BlockSpec("stem", 16, 16, 1, 8, 3, 1, 1.0, "relu", -1), BlockSpec("mbconv", 16, 16, 8, 8, 3, 1, 2.0, "relu", 0),
              BlockSpec("mbconv", 16, 16, 8, 8, 3, 1, 2.0, "relu", 0), BlockSpec("head", 16, 16, 8, 10, 1, 1, 1.0, "none", 1)]  # fmt: skip
    rows = {}
    for b in blocks:
        for p in ("fp32", "int8"):
            rows[BlockKey.of(b, p)] = Row(BlockKey.of(b, p), 0.1, 0.0, None, "measured")
    block_pred = predict(LatencyTable(device=dev, rows=rows), blocks, PRECS)
    keys = [_conv(1, 8), _conv(8, 8), _conv(8, 8), _conv(8, 10)]
    layer_pred = predict_layers(dev, _layer_table(keys), _specs(keys), PRECS)
    for pred in (block_pred, layer_pred):
        assert pred.transitions_ms == pytest.approx(2 * 0.01)  # input + the fp32 -> int8 switch
        assert pred.overhead_ms == pytest.approx(0.05)
        assert pred.latency_ms == pytest.approx(0.05 + 0.02 + sum(c.latency_ms for c in pred.breakdown))
    assert block_pred.source == "blocks.csv (measured)" and layer_pred.source == "layers.csv (measured)"


def test_layer_scale_is_fitted_stored_in_device_yaml_and_changes_predictions(
    tmp_path: Path, monkeypatch
) -> None:
    keys = [_conv(1, 8), _conv(8, 16), _conv(16, 16), _conv(16, 32)]
    dev = _device(block_scale={"fp32": 0.9, "int8": 1.1})
    save_device(tmp_path, dev)
    save_layers(tmp_path, _layer_table(keys).rows.values())
    table = load_layers(tmp_path, dev)
    nets = [keys[:n] for n in (2, 3, 4)]
    true = {"fp32": 1.5, "int8": 0.8}

    def measured(pred, precs):  # what a network "takes" end to end if the rows are off by ``true``
        return (
            pred.overhead_ms
            + pred.transitions_ms
            + sum(c.latency_ms * true[p] for c, p in zip(pred.breakdown, precs))
        )

    unit = unit_scale(dev, "layers")
    groups: dict[str, list[Timed]] = {}
    for prec in ("fp32", "int8"):
        for net in nets:
            precs = ["fp32", *[prec] * (len(net) - 1)]
            pred = predict_layers(unit, table, _specs(net), precs)
            groups.setdefault(prec, []).append(Timed(pred, precs, measured(pred, precs)))
    scales = fit_scales(groups)
    assert scales == pytest.approx(true, abs=1e-3)

    before = predict_layers(dev, table, _specs(keys), ["fp32"] * 4)
    stored = store_scale(tmp_path, "layers", scales, "fitted on 6 test networks")
    loaded = load_device(tmp_path / "device.yaml")
    assert loaded.layer_scale == stored.layer_scale == scales
    assert (
        loaded.block_scale == dev.block_scale
        and loaded.host["layer_scale_fit"] == "fitted on 6 test networks"
    )
    after = predict_layers(loaded, load_layers(tmp_path, loaded), _specs(keys), ["fp32"] * 4)
    assert after.latency_ms - 0.05 == pytest.approx(1.5 * (before.latency_ms - 0.05))
    assert _device().scale("int8", "layers") == 1.0  # never fitted: 1

    # the same fit from timed networks (timing replaced by the "true" figures)
    specs = [(_specs(net), ["fp32", *[p] * (len(net) - 1)]) for p in ("fp32", "int8") for net in nets]

    def fake_measure(paths, shapes, **kw):
        out = []
        for layers, precs in specs:
            ms = measured(predict_layers(unit, table, layers, precs), precs)
            out.append(Timing(ms, 0.0, ms, ms, 10))
        return out

    monkeypatch.setattr(layer_profile, "measure_passes", fake_measure)
    networks = [
        Network(layers, precs, tmp_path / f"n{i}.onnx", (1, 1, 16, 16))
        for i, (layers, precs) in enumerate(specs)
    ]
    assert fit_layer_scale(tmp_path, dev, networks) == pytest.approx(true, abs=1e-3)


def test_missing_layer_is_interpolated_with_a_warning_never_zero(caplog) -> None:
    dev = _device()
    table = _layer_table([_conv(8, 8), _conv(8, 16), _conv(16, 16), _conv(16, 32)])
    missing = _conv(12, 24)
    assert table.get(missing) is None
    with caplog.at_level(logging.WARNING):
        pred = predict_layers(dev, table, _specs([_conv(8, 8), missing]), ["fp32", "fp32"])
    assert pred.interpolated == 1 and "interpolated" in caplog.text and missing.label() in caplog.text
    cost = pred.breakdown[1]
    assert cost.interpolated and cost.latency_ms == pytest.approx(
        0.01 + missing.macs() / 1e6, rel=1e-6
    )  # linear fit
    # no row of the family at all (a 5x5 conv): unpriced, not zero
    odd = LayerKey("conv", 16, 16, 8, 8, 5, 1, 1, "relu", "fp32")
    with pytest.raises(UnpricedLayersError, match="k5"):
        predict_layers(dev, table, _specs([odd]), ["fp32"])
