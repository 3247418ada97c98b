"""Compression steps the evaluator calls, in order: ``prepare`` (on the torch subnet, before the
fine-tune: structured pruning) and ``finalize`` (on the exported ONNX file: quantization).

Each op is registered by name with the candidate choices it implements; a candidate that asks
for something no registered op implements fails with a clear error instead of being scored as
if it were compressed.
"""

from __future__ import annotations

from autocompress.compress.distill import finetune, kd_loss
from autocompress.compress.pipeline import (
    available_precisions,
    available_prune_ratios,
    check_supported,
    finalize,
    prepare,
)

__all__ = [
    "available_precisions",
    "available_prune_ratios",
    "check_supported",
    "finalize",
    "finetune",
    "kd_loss",
    "prepare",
]
