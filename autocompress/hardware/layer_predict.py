"""A network read from ONNX priced from a target's ``layers.csv``: turns its layers and their
precisions into table keys and prices them by the one path (``pricing.price``).

A layer whose exact shape is missing is interpolated from rows of its family (same op, kernel,
stride, depthwise or not, activation, precision), with a warning; a family with no row at all
is unpriced (:class:`~autocompress.exceptions.UnpricedLayersError`). Estimated targets price a
missing layer from the device's calibrated roofline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from autocompress.exceptions import UnpricedLayersError
from autocompress.hardware.layer_estimate import layer_roofline_ms
from autocompress.hardware.layer_table import LayerKey, LayerSpec, LayerTable
from autocompress.hardware.lut import DeviceSpec
from autocompress.hardware.pricing import Prediction, price
from autocompress.hardware.pricing import unpriced as unpriced_keys


def layer_precisions(layers: Sequence[LayerSpec], prefixes: dict[str, str]) -> list[str]:
    """Precision of each layer: that of the longest node-name prefix in ``prefixes`` that its
    first node starts with, else fp32 (parts without weights stay float, as quantization
    excludes them)."""
    out = []
    for layer in layers:
        hits = [p for p in prefixes if layer.node.startswith(p)]
        out.append(prefixes[max(hits, key=len)] if hits else "fp32")
    return out


def _estimate(device: DeviceSpec) -> Callable[[LayerKey], float] | None:
    if device.roofline is None:
        return None
    return lambda key: layer_roofline_ms(device, key)


def _keys(layers: Sequence[LayerSpec], precisions: Sequence[str], batch: int) -> list[LayerKey]:
    return [layer.at(prec, batch) for layer, prec in zip(layers, precisions, strict=True)]


def unpriced(device: DeviceSpec, table: LayerTable, layers: Sequence[LayerSpec],
             precisions: Sequence[str], batch: int = 1) -> list[str]:  # fmt: skip
    """Labels of the layers the table cannot price at the given precisions (empty when all can)."""
    return unpriced_keys(device, table, _keys(layers, precisions, batch), _estimate(device))


def predict_layers(device: DeviceSpec, table: LayerTable, layers: Sequence[LayerSpec],
                   precisions: Sequence[str], *, batch: int = 1) -> Prediction:  # fmt: skip
    """Latency (ms) and energy (mJ) of a network from its layers (see
    :mod:`autocompress.hardware.pricing` for the rules).

    Raises:
        UnpricedLayersError: a layer whose family has no row (measured tables), or a precision
            the target does not run.
    """
    keys = _keys(layers, precisions, batch)
    estimate = _estimate(device)
    missing = unpriced_keys(device, table, keys, estimate)
    if missing:
        raise UnpricedLayersError(
            f"target {device.name} cannot price {len(missing)} layer(s): {'; '.join(missing)}"
        )
    return price(device, table, keys, estimate=estimate, source=f"layers.csv ({device.source})")
