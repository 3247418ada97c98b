"""fp16 parts of a user's model: the modules of a part stored and run in half precision, with
casts at their edges (as ``compress.pipeline.HalfPart`` does for our own space's stages), so the
exported file holds them in fp16 and every runtime computes them from fp16 values."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, list | tuple):
        return type(value)(_cast(v, dtype) for v in value)
    return value


class HalfModule(nn.Module):
    """``inner`` in fp16: its floating inputs cast to half, its outputs back to float (any
    number of tensor arguments and outputs, unlike our space's single-input ``HalfPart``)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.half()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*_cast(args, torch.float16), **{k: _cast(v, torch.float16) for k, v in kwargs.items()})
        return _cast(out, torch.float32)


def half_parts(model: nn.Module, parts: Sequence[str]) -> nn.Module:
    """A copy of ``model`` whose submodules at the module paths ``parts`` run in fp16 (``model``
    itself stays fp32). A part's ONNX nodes keep its path as their name prefix
    (``/layer2/layer2.0/inner/...``), so per-part quantization still finds the others."""
    out = copy.deepcopy(model).eval()
    for name in parts:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        _fold_next_bn(parent, child)
        setattr(parent, child, HalfModule(getattr(parent, child)))
    return out


def _fold_next_bn(parent: nn.Module, child: str) -> None:
    """A part that is one conv of a ``Sequential`` whose next layer is its BatchNorm: fold the
    BatchNorm into it first (the export folds conv + BN, but not across the casts)."""
    if not isinstance(parent, nn.Sequential) or not child.isdigit():
        return
    i = int(child)
    conv = parent[i]
    if i + 1 < len(parent) and isinstance(conv, nn.Conv2d) and isinstance(parent[i + 1], nn.BatchNorm2d):
        parent[i] = fuse_conv_bn_eval(conv, parent[i + 1])
        parent[i + 1] = nn.Identity()
