"""The evaluator's compression seam.

``prepare`` runs on the extracted torch subnet before the fine-tune: structured pruning of each
stage's MBConv hidden channels by the candidate's ratio (torch-pruning DepGraph, see
``prune.py``). ``finalize`` turns the exported fp32 ONNX file into the deployable one: each
stage in fp32 or int8 (static QDQ, per-channel weights, calibrated on the held-out ``calib``
split; ONNX Runtime's quantizer, or NNCF for OpenVINO targets), so a candidate can be int8 in the body and fp32 in the first and
last layers; stages marked fp16 are exported with fp16 weights and activations (``for_export``
wraps them in casts, so the file stores them in half precision and every runtime computes them
from fp16 values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from autocompress.arch import stem_head_precisions
from autocompress.compress.deploy import Quantization, ptq
from autocompress.compress.prune import prune_subnet
from autocompress.compress.quantize import check_method
from autocompress.exceptions import CompressionUnavailableError
from autocompress.space import Candidate, SearchSpace
from autocompress.supernet import recalibrate_bn

_PRECISIONS = ("fp32", "fp16", "int8")
_PRUNE_RANGE = (0.0, 1.0)  # half-open: any ratio r with 0 <= r < 1
# ONNX node-name prefixes of each part of an exported SubNet (the exporter keeps module paths).
NORMALIZE_PREFIX = "/normalize/"
STEM_PREFIXES = ("/stem/",)
HEAD_PREFIXES = ("/pool/", "/Flatten", "/classifier/")


def stage_prefixes(stage: int) -> tuple[str, ...]:
    return (f"/stages.{stage}/",)


def _prune_ok(ratio: float) -> bool:
    return _PRUNE_RANGE[0] <= ratio < _PRUNE_RANGE[1]


def check_supported(space: SearchSpace, runtime: str = "onnxruntime") -> None:
    """Fail before any training if the space asks for a compression the evaluator lacks
    (``runtime``: the target's; OpenVINO targets quantize with NNCF)."""
    dims = space.dimensions()
    if any(p == "int8" for k, v in dims.items() if k.endswith("_precision") for p in v):
        for method in dims["calibration"]:
            check_method(method, runtime)
    precisions = sorted({p for k, v in dims.items() if k.endswith("_precision") for p in v})
    ratios = sorted({r for k, v in dims.items() if k.endswith("_prune") for r in v})
    bad_p = [p for p in precisions if p not in _PRECISIONS]
    bad_r = [r for r in ratios if not _prune_ok(r)]
    if bad_p:
        raise CompressionUnavailableError(
            f"space {space.name} asks for precision {', '.join(bad_p)}, but this version of "
            f"autocompress exports {', '.join(_PRECISIONS)} only; remove {', '.join(bad_p)} from "
            f"compression.precision"
        )
    if bad_r:
        raise CompressionUnavailableError(
            f"space {space.name} asks for pruning ratios {bad_r}; structured pruning takes ratios "
            f"within [0, 1) (the share of hidden channels removed)"
        )


def prepare(
    model: nn.Module,
    cand: Candidate,
    space: SearchSpace,
    *,
    images: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    calibration: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Compression applied to the torch subnet before fine-tuning: structured pruning (on the
    CPU; the BatchNorm re-estimation after it on ``device``).

    ``model`` is the subnet of ``unpruned(cand)``; it comes back pruned (in place) to the
    geometry ``arch.plan(cand, ...)`` describes, or untouched when every ratio is 0.

    Args:
        images, labels: training samples, needed by the ``taylor`` criterion only.
        calibration: training-distribution images to re-estimate BatchNorm statistics on after
            pruning (``space.model.training.recalib_batches`` batches). Pass them: the pruned
            channels fed the BatchNorm after every project conv, whose running statistics are
            stale afterwards (Fashion-MNIST's largest subnet at ratio 0.5: 27% validation
            accuracy without re-estimation, 88% with it).
    """
    if any(not _prune_ok(r) for r in cand.prune):
        raise CompressionUnavailableError(f"pruning ratios {cand.prune} are not within [0, 1)")
    if all(r == 0 for r in cand.prune):
        return model
    model = prune_subnet(model, cand, space, images=images, labels=labels)
    if calibration is not None:
        recalibrate_bn(model, calibration, space.model.training.recalib_batches, device=device)
    return model.eval()


def part_precisions(cand: Candidate, space: SearchSpace) -> dict[tuple[str, ...], str]:
    """Precision of each exported part (stem, each stage, head), by node-name prefixes."""
    stem, head = stem_head_precisions(cand, space)
    parts = {STEM_PREFIXES: stem}
    for s, prec in enumerate(cand.precision):
        parts[stage_prefixes(s)] = prec
    parts[HEAD_PREFIXES] = head
    return parts


def int8_modules(cand: Candidate, space: SearchSpace) -> list[str]:
    """Attribute paths of the SubNet parts the candidate runs in int8 (for QAT)."""
    stem, head = stem_head_precisions(cand, space)
    names = ["stem"] if stem == "int8" else []
    names += [f"stages.{s}" for s, prec in enumerate(cand.precision) if prec == "int8"]
    return names + (["classifier"] if head == "int8" else [])


class HalfPart(nn.Module):
    """A part of the network stored and run in fp16, with casts at its edges."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.half()).float()


def for_export(model: nn.Module, cand: Candidate, space: SearchSpace) -> nn.Module:
    """The module to export: a copy of ``model`` whose fp16 parts (stages the candidate marks
    fp16, and the stem/classifier when the first/last policy follows them) run in half
    precision. ``model`` itself is left in fp32."""
    stem, head = stem_head_precisions(cand, space)
    if "fp16" not in (*cand.precision, stem, head):
        return model
    import copy

    out = copy.deepcopy(model).eval()
    for s, prec in enumerate(cand.precision):
        if prec == "fp16":
            out.stages[s] = HalfPart(out.stages[s])
    if stem == "fp16":
        out.stem = HalfPart(out.stem)
    if head == "fp16":
        out.classifier = HalfPart(out.classifier)
    return out


def quantization(cand: Candidate, space: SearchSpace, *, runtime: str = "onnxruntime") -> Quantization:
    """How an exported SubNet of ``cand`` is quantized: its int8 parts with the candidate's
    calibration method (NNCF when the target's ``runtime`` is OpenVINO, else ONNX Runtime); the
    input scaling and every other part stay float."""
    if any(p not in _PRECISIONS for p in cand.precision):
        raise CompressionUnavailableError(f"precisions {cand.precision} are not implemented")
    parts = part_precisions(cand, space)
    keep_float = [NORMALIZE_PREFIX]  # input scaling stays float: it feeds the first quantize
    for prefixes, prec in parts.items():
        if prec != "int8":
            keep_float.extend(prefixes)
    return Quantization(int8=any(p == "int8" for p in parts.values()), keep_float=tuple(keep_float),
                        method=cand.calibration, runtime=runtime)  # fmt: skip


def finalize(
    src: Path, dst: Path, cand: Candidate, space: SearchSpace, calibration: np.ndarray,
    *, runtime: str = "onnxruntime",
) -> Path:  # fmt: skip
    """Turn the exported file ``src`` (fp32, with fp16 parts already in half precision, see
    ``for_export``) into the deployable ``dst``: PTQ of the int8 parts (``deploy.ptq``)."""
    return ptq(src, dst, calibration, quantization(cand, space, runtime=runtime))
