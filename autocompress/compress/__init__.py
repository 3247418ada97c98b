"""Compression steps the evaluator calls, in order: ``prepare`` (on the torch subnet, before the
fine-tune: structured pruning), ``for_export`` (fp16 parts in half precision) and ``finalize``
(on the exported ONNX file: int8 quantization), with ``qat_finetune`` (fake-quantized fine-tune)
when post-training int8 loses too much.

Each op is registered by name with the candidate choices it implements; a candidate that asks
for something no registered op implements fails with a clear error instead of being scored as
if it were compressed.
"""

from __future__ import annotations

from autocompress.compress.distill import finetune, kd_loss
from autocompress.compress.pipeline import (
    check_supported,
    finalize,
    for_export,
    int8_modules,
    prepare,
)
from autocompress.compress.prune import IMPORTANCES, geometry_mismatches, prune_hidden, prune_subnet
from autocompress.compress.qat import qat_finetune

__all__ = [
    "IMPORTANCES",
    "check_supported",
    "finalize",
    "for_export",
    "finetune",
    "geometry_mismatches",
    "int8_modules",
    "kd_loss",
    "prepare",
    "prune_hidden",
    "prune_subnet",
    "qat_finetune",
]
