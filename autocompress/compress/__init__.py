"""Compression steps: prune, distil, quantize, QAT, and ``deploy`` (PTQ -> QAT if worse -> keep better).

For our supernet's subnets: ``prepare`` (on the torch subnet, before the fine-tune: structured
pruning), ``for_export`` (fp16 parts in half precision) and ``quantization`` / ``finalize`` (on
the exported ONNX file: int8 quantization), with ``qat_finetune`` (fake-quantized fine-tune)
when post-training int8 loses too much; ``deploy.deploy`` runs those last steps in order for
every problem.

Each op is registered by name with the candidate choices it implements; a candidate that asks
for something no registered op implements fails with a clear error instead of being scored as
if it were compressed.
"""

from __future__ import annotations

from autocompress.compress.deploy import Quantization, deploy, float_nodes_outside, ptq
from autocompress.compress.distill import finetune, kd_loss
from autocompress.compress.longtrain import distill_epochs
from autocompress.compress.pipeline import (
    check_supported,
    finalize,
    for_export,
    int8_modules,
    prepare,
    quantization,
)
from autocompress.compress.prune import IMPORTANCES, geometry_mismatches, prune_hidden, prune_subnet
from autocompress.compress.qat import qat_finetune

__all__ = [
    "IMPORTANCES",
    "check_supported",
    "finalize",
    "float_nodes_outside",
    "for_export",
    "finetune",
    "geometry_mismatches",
    "int8_modules",
    "kd_loss",
    "prepare",
    "prune_hidden",
    "prune_subnet",
    "ptq",
    "Quantization",
    "deploy",
    "distill_epochs",
    "quantization",
    "qat_finetune",
]
