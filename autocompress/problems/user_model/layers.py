"""The layer keys a user model's space produces, so ``profile --layers`` can measure them all."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from autocompress.exceptions import ModelError
from autocompress.hardware.onnx_layers import extract_layers
from autocompress.problems.user_model.loader import UserModel
from autocompress.problems.user_model.space import ModelSpace, prune_model
from autocompress.runtime import export_onnx


def user_example(user: UserModel) -> torch.Tensor:
    """A batch of two zero inputs of the model's shape (tracing, dependency graphs)."""
    return torch.zeros(2, *user.input_shape)


def model_layer_keys(user: UserModel, space: ModelSpace, precisions: list[str]) -> list[Any]:
    """Every layer key the space's uniform pruning ratios produce (for ``profile --layers``)."""
    ratios = sorted({r for k, v in space.dimensions().items() if k.startswith("prune.") for r in v})
    keys: dict[Any, None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in ratios or [0.0]:
            model = prune_model(user.module, space, {g.name: r for g in space.groups}, user_example(user))
            path = Path(tmp) / f"r{r}.onnx"
            export_onnx(model, path, channels=user.input_shape[0], resolution=user.input_shape[1])
            layers, unknown = extract_layers(path)
            if unknown:
                raise ModelError(f"the layer tables cannot price {'; '.join(unknown[:8])} (no profiler for these ops)")
            for layer in layers:
                for p in precisions:
                    keys.setdefault(replace(layer.key, precision=p), None)
    return list(keys)
