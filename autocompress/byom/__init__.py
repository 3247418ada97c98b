"""Bring your own model: a compression search over a user's trained PyTorch network.

``model`` loads ``--model FILE.py:FUNCTION`` / ``package.module:FUNCTION`` and ``--weights``;
``space`` derives the search space from torch-pruning's dependency graph (one pruning ratio per
prunable group, one precision per group of layers, distillation settings); ``evaluate`` scores
a candidate (prune, distil from the user's model, export, quantize, ONNX Runtime accuracy,
latency from the generic layer tables of ``hardware.layers``); ``search`` runs the shared
Optuna machinery over it.
"""

from __future__ import annotations

from autocompress.byom.model import UserModel, load_user_model
from autocompress.byom.space import ModelCandidate, ModelSpace, derive_space

__all__ = ["ModelCandidate", "ModelSpace", "UserModel", "derive_space", "load_user_model"]
