"""The evaluator's compression seam.

``prepare`` runs on the extracted torch subnet before the fine-tune (structured pruning goes
here); ``finalize`` runs on the exported fp32 ONNX file (quantization goes here). Today the
pipeline implements unpruned fp32 candidates; everything else is refused up front with a clear
error rather than scored as if it had been compressed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch.nn as nn

from autocompress.exceptions import CompressionUnavailableError
from autocompress.space import Candidate, SearchSpace

_PRECISIONS = ("fp32",)
_PRUNE_RATIOS = (0.0,)


def available_precisions() -> tuple[str, ...]:
    """Stage precisions the evaluator can produce for real."""
    return _PRECISIONS


def available_prune_ratios() -> tuple[float, ...]:
    return _PRUNE_RATIOS


def check_supported(space: SearchSpace) -> None:
    """Fail before any training if the space asks for a compression the evaluator lacks."""
    dims = space.dimensions()
    precisions = sorted({p for k, v in dims.items() if k.endswith("_precision") for p in v})
    ratios = sorted({r for k, v in dims.items() if k.endswith("_prune") for r in v})
    bad_p = [p for p in precisions if p not in _PRECISIONS]
    bad_r = [r for r in ratios if r not in _PRUNE_RATIOS]
    if bad_p:
        raise CompressionUnavailableError(
            f"space {space.name} asks for precision {', '.join(bad_p)}, but this version of "
            f"autocompress exports {', '.join(_PRECISIONS)} only; set compression.precision: [fp32]"
        )
    if bad_r:
        raise CompressionUnavailableError(
            f"space {space.name} asks for pruning ratios {bad_r}, but this version of autocompress "
            f"does not prune yet; set compression.prune_ratio: [0.0]"
        )


def prepare(model: nn.Module, cand: Candidate) -> nn.Module:
    """Compression applied to the torch subnet before fine-tuning (structured pruning)."""
    if any(r not in _PRUNE_RATIOS for r in cand.prune):
        raise CompressionUnavailableError(f"pruning ratios {cand.prune} are not implemented")
    return model


def finalize(onnx_path: Path, cand: Candidate, calibration: np.ndarray) -> Path:
    """Compression applied to the exported file (quantization); returns the deployable file."""
    if any(p not in _PRECISIONS for p in cand.precision):
        raise CompressionUnavailableError(f"precisions {cand.precision} are not implemented")
    return onnx_path
