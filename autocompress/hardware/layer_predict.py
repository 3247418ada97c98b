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
from autocompress.hardware.layer_estimate import fused_ms, layer_roofline_ms
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


def launch_free(keys: Sequence[LayerKey]) -> list[bool]:
    """Which layers a fusing runtime runs inside the kernel before them, by the convention the
    rooflines were calibrated with and the block tables price (``roofline.block_layers``,
    ``reference_nets``): a linear or 1x1 conv on a 1x1 map after a global pool (the classifier, a
    squeeze-excite's reduce and expand) and the excitation's multiply after them; a residual add
    right after a conv (fused into its epilogue); the second and later elementwise ops of the
    input's normalisation (one pointwise kernel, before the first conv). Their work is priced,
    their launch is not; on measured tables every layer is a row timed alone, as ONNX Runtime and
    OpenVINO run them, and nothing is fused."""
    free = [False] * len(keys)
    seen_conv = False
    for i, key in enumerate(keys):
        prev = keys[i - 1] if i else None
        if prev is not None:
            flat_prev = prev.out_h * prev.out_w == 1
            if key.op in ("linear", "conv") and key.in_h * key.in_w == 1 and flat_prev:
                free[i] = True
            elif key.op == "scale" and free[i - 1] and prev.op in ("linear", "conv"):
                free[i] = True
            elif key.op == "add" and prev.op == "conv":
                free[i] = True
            elif key.op == "scale" and prev.op == "scale" and not seen_conv:
                free[i] = True
        seen_conv = seen_conv or key.op == "conv"
    return free


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
    free = launch_free(keys) if device.roofline is not None else [False] * len(keys)  # the roofline's convention

    def fused(i: int, key: LayerKey) -> float | None:
        return fused_ms(device, key) if free[i] else None

    return price(device, table, keys, estimate=estimate, source=f"layers.csv ({device.source})", fused=fused)
