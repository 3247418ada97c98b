"""A network of our fused blocks priced from a target's ``blocks.csv``: turns the blocks and
their precisions into table keys and prices them by the one path (``pricing.price``).
Separate from the search.
"""

from __future__ import annotations

from autocompress.arch import BlockSpec
from autocompress.hardware.lut import BlockKey, LatencyTable
from autocompress.hardware.pricing import Prediction, price
from autocompress.hardware.roofline import block_latency_ms


def predict(
    table: LatencyTable, blocks: list[BlockSpec], precisions: list[str], *, batch: int = 1
) -> Prediction:
    """Predict a network's latency (ms) and energy (mJ) on ``table``'s device.

    Blocks missing from the table are interpolated (never zero) and logged as a warning; see
    :mod:`autocompress.hardware.pricing` for the rules.

    Raises:
        TargetError: a precision the device does not run, or a block with no rows to interpolate from.
    """
    dev = table.device
    keys = [BlockKey.of(block, prec, batch) for block, prec in zip(blocks, precisions, strict=True)]
    estimate = None
    if dev.roofline is not None:

        def estimate(key: BlockKey) -> float:
            return block_latency_ms(dev, key.spec(), key.precision)

    return price(dev, table, keys, estimate=estimate, source=f"blocks.csv ({dev.source})")
