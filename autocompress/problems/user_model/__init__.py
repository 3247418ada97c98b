"""Bring your own model: the problem of compressing a user's trained PyTorch network.

``loader`` loads ``--model FILE.py:FUNCTION`` / ``package.module:FUNCTION`` and ``--weights``;
``space`` derives the search space from torch-pruning's dependency graph (one pruning ratio per
prunable group, one precision per group of layers, distillation settings); ``problem`` scores
a candidate (prune, distil from the user's model, the shared deploy step, accuracy by the
target's runtime, latency from the generic layer tables); ``layers`` lists the layer keys a
model's space produces (for ``profile --layers``).
"""

from __future__ import annotations

from autocompress.problems.user_model.loader import UserModel, load_user_model
from autocompress.problems.user_model.space import ModelCandidate, ModelSpace, derive_space

__all__ = ["ModelCandidate", "ModelSpace", "UserModel", "derive_space", "load_user_model"]
