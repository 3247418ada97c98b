"""What ``--model`` and ``--input-shape`` say, checked without importing torch (the CLI refuses a
typo in them before loading anything; ``problems.user_model.loader`` then imports the model).
"""

from __future__ import annotations

from pathlib import Path

from autocompress._io import check_regular_file
from autocompress.exceptions import ModelError

MAX_INPUT_CHANNELS, MAX_INPUT_SIDE = 4096, 1024  # a search space's limits (width, resolution)


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``1,28,28`` -> (1, 28, 28): channels, height, width (square inputs)."""
    try:
        dims = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise ModelError(f"--input-shape must be C,H,W with positive integers, e.g. 1,28,28; got {text!r}")
    if dims[1] != dims[2]:
        raise ModelError(f"--input-shape: only square inputs are supported (H == W); got {text!r}")
    if dims[0] > MAX_INPUT_CHANNELS or dims[1] > MAX_INPUT_SIDE:
        raise ModelError(f"--input-shape must be within {MAX_INPUT_CHANNELS},{MAX_INPUT_SIDE},{MAX_INPUT_SIDE} "
                         f"(channels, side in pixels, as a search space's resolutions); got {text!r}")  # fmt: skip
    return dims  # type: ignore[return-value]


def split_spec(spec: str) -> tuple[str, str]:
    """``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` -> (where, function)."""
    if ":" not in spec:
        raise ModelError(f"--model must be FILE.py:FUNCTION or package.module:FUNCTION; got {spec!r}")
    where, _, fn = spec.rpartition(":")
    if not where or not fn.isidentifier():
        raise ModelError(f"--model must be FILE.py:FUNCTION or package.module:FUNCTION; got {spec!r}")
    return where, fn


def check_model_spec(spec: str, input_shape: str | None = None) -> None:
    """``--model`` (and ``--input-shape``) well formed, and its file (when it names one) a regular
    file, before the import of torch and of the user's code.

    Raises:
        ModelError: a malformed spec or shape, a missing file, or a FIFO/device in its place.
    """
    where, _ = split_spec(spec)
    if input_shape:
        parse_input_shape(input_shape)
    path = Path(where).expanduser()
    if where.endswith(".py") or path.suffix == ".py" or "/" in where:
        check_regular_file(path, "--model: file", ModelError)
