"""Load a user's model: ``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` returning an
``nn.Module``, a state dict loaded with ``torch.load(weights_only=True)``, and the input shape.

Every way this can go wrong is a :class:`~autocompress.exceptions.ModelError` with one line
that names the file and the rule that broke.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from autocompress._io import check_regular_file, file_sha256
from autocompress.exceptions import ModelError
from autocompress.model_spec import split_spec


@dataclass
class UserModel:
    """The user's trained network and where it came from.

    Attributes:
        module: the network with its weights loaded, in eval mode (the teacher; never modified).
        spec: ``--model`` as given.
        source: the resolved file (or module name) the builder came from.
        function: the builder's name.
        weights: the state-dict file.
        weights_sha256: hash of the weights file (recorded in the run's config).
        input_shape: (C, H, W) the network takes.
        num_outputs: size of its output (classes).
    """

    module: nn.Module
    spec: str
    source: str
    function: str
    weights: Path
    weights_sha256: str
    input_shape: tuple[int, int, int]
    num_outputs: int

    def describe(self) -> dict[str, object]:
        params = sum(p.numel() for p in self.module.parameters())
        return {
            "spec": self.spec,
            "source": self.source,
            "function": self.function,
            "weights": str(self.weights),
            "weights_sha256": self.weights_sha256,
            "input_shape": list(self.input_shape),
            "num_outputs": self.num_outputs,
            "params": int(params),
        }


def import_builder(spec: str) -> tuple[object, str, str]:
    """The builder named by ``spec``, the file or module it came from, and its name."""
    where, fn = split_spec(spec)
    path = Path(where).expanduser()
    if where.endswith(".py") or path.suffix == ".py" or "/" in where:
        check_regular_file(path, "--model: file", ModelError)  # a FIFO would block the import
        name = f"autocompress_user_model_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ModelError(f"--model: cannot import {path} as a Python file")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up here
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ModelError(f"--model: importing {path} failed: {type(exc).__name__}: {exc}") from None
        source = str(path.resolve())
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise ModelError(f"--model: cannot import module {where!r}: {type(exc).__name__}: {exc}") from None
        source = where
    builder = getattr(module, fn, None)
    if builder is None or not callable(builder):
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ModelError(f"--model: {where} has no function {fn!r} (callables there: {', '.join(public[:12])})")
    return builder, source, fn


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (``torch.load(weights_only=True)``: no code from the file runs)."""
    check_regular_file(path, "--weights: file", ModelError)  # before torch.load: a FIFO would block it
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"--weights: {path} is not a state dict torch.load(weights_only=True) can read "
            f"(save it with torch.save(model.state_dict(), path)): {first[:200]}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(
            f"--weights: {path} holds a {type(state).__name__}, not a state dict of tensors "
            f"(save it with torch.save(model.state_dict(), path))"
        )
    return state


def _match_weights(module: nn.Module, state: dict[str, torch.Tensor], path: Path, fn: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]  # fmt: skip
    if missing or unexpected or shapes:
        bits = []
        if shapes:
            bits.append(f"shape mismatch {', '.join(shapes[:3])}" + (f" (+{len(shapes) - 3})" if len(shapes) > 3 else ""))
        if missing:
            bits.append(f"missing {', '.join(missing[:3])}" + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
        if unexpected:
            bits.append(f"unexpected {', '.join(unexpected[:3])}"
                        + (f" (+{len(unexpected) - 3})" if len(unexpected) > 3 else ""))  # fmt: skip
        raise ModelError(f"--weights: {path} does not match the model {fn}() builds: {'; '.join(bits)}")
    module.load_state_dict(state, strict=True)


def load_user_model(
    spec: str, weights: str | Path, *, input_shape: tuple[int, int, int] | None = None,
    default_shape: tuple[int, int, int] | None = None,
) -> UserModel:  # fmt: skip
    """Build the user's network, load its weights and check it runs on its input shape.

    Args:
        spec: ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``; the function takes no
            argument and returns an ``nn.Module``.
        weights: a file written by ``torch.save(model.state_dict(), path)``.
        input_shape: (C, H, W) when given (``--input-shape``).
        default_shape: what to use when ``input_shape`` is not given (the data set's).

    Raises:
        ModelError: one line naming what broke.
    """
    builder, source, fn = import_builder(spec)
    try:
        module = builder()  # type: ignore[operator]
    except Exception as exc:
        raise ModelError(f"--model: {fn}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise ModelError(f"--model: {fn}() returned a {type(module).__name__}, not a torch.nn.Module")
    path = Path(weights).expanduser()
    _match_weights(module, load_state_dict(path), path, fn)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    shape = input_shape or default_shape
    if shape is None:
        raise ModelError("--input-shape is needed: the input shape cannot be inferred")
    try:
        with torch.no_grad():
            out = module(torch.zeros(2, *shape))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelError(
            f"--model: {fn}() does not run on inputs of shape {','.join(map(str, shape))} "
            f"({type(exc).__name__}: {first[:200]}); pass --input-shape C,H,W"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"--model: {fn}() must return logits of shape (batch, classes); got {got}")
    return UserModel(module=module, spec=spec, source=source, function=fn, weights=path,
                     weights_sha256=file_sha256(path), input_shape=tuple(shape),  # type: ignore[arg-type]
                     num_outputs=int(out.shape[1]))  # fmt: skip
