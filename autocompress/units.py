"""Parsing of budgets and sizes given on the command line (``10ms``, ``800us``, ``2MB``)."""

from __future__ import annotations

import math
import re

from autocompress.exceptions import BadInputError

_NUMBER = r"(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_TIME_UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3}
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2}
_TIME_RE = re.compile(rf"^{_NUMBER}(?P<unit>s|ms|us|µs)$")
_SIZE_RE = re.compile(rf"^{_NUMBER}(?P<unit>b|kb|mb|gb|kib|mib)$", re.IGNORECASE)

TIME_FORMS = "a positive number with a unit and no space, e.g. 10ms, 0.5ms, 800us, 1s"
SIZE_FORMS = "a positive number with a unit and no space, e.g. 500KB, 2MB, 1.5MiB"


def parse_budget(text: str) -> float:
    """Parse a latency budget and return it in milliseconds.

    Raises:
        BadInputError: the text is not a positive, finite time with a unit.
    """
    match = _TIME_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise BadInputError(f"budget must be {TIME_FORMS}; got {text!r}")
    value = float(match["num"]) * _TIME_UNITS[match["unit"]]
    if not math.isfinite(value) or value <= 0:
        raise BadInputError(f"budget must be {TIME_FORMS} (greater than 0 and finite); got {text!r}")
    return value


def parse_size(text: str) -> int:
    """Parse a size limit and return it in bytes."""
    match = _SIZE_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise BadInputError(f"size must be {SIZE_FORMS}; got {text!r}")
    value = float(match["num"]) * _SIZE_UNITS[match["unit"].lower()]
    if not math.isfinite(value) or value < 1:
        raise BadInputError(f"size must be {SIZE_FORMS} (at least 1 byte and finite); got {text!r}")
    return int(value)


def format_ms(ms: float) -> str:
    """Format a latency for people: ``0.42 ms``, ``12.3 ms``."""
    if ms < 1:
        return f"{ms:.3f} ms"
    if ms < 100:
        return f"{ms:.2f} ms"
    return f"{ms:.0f} ms"


def format_bytes(n: float) -> str:
    """Format a size for people in decimal units."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
