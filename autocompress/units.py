"""Parsing of budgets and sizes given on the command line (``10ms``, ``800us``, ``2MB``)."""

from __future__ import annotations

import math
import re

from autocompress.exceptions import BadInputError

_NUMBER = r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_TIME_UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3}
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2}
# A space between number and unit is accepted ("10 ms"): people write it, and nothing else
# could be meant by it.
_TIME_RE = re.compile(rf"^{_NUMBER}\s*(?P<unit>s|ms|us|µs)$")
_SIZE_RE = re.compile(rf"^{_NUMBER}\s*(?P<unit>b|kb|mb|gb|kib|mib)$", re.IGNORECASE)
_BARE_NUMBER = re.compile(rf"^{_NUMBER}$")

TIME_FORMS = "a positive number with a unit, e.g. 10ms, 0.5ms, 800us, 1s"
SIZE_FORMS = "a positive number with a unit, e.g. 500KB, 2MB, 1.5MiB"


def _parse(text: object, pattern: re.Pattern[str], what: str, forms: str, unit_hint: str) -> tuple[float, str]:
    """(value, unit) of ``text``, or BadInputError naming the rule that broke."""
    if not isinstance(text, str):
        raise BadInputError(f"{what} must be {forms}; got {text!r}")
    stripped = text.strip()
    match = pattern.match(stripped)
    if match is None:
        if _BARE_NUMBER.match(stripped):
            raise BadInputError(f"{what} must be {forms}; got {text!r}, which has no unit "
                                f"(did you mean '{stripped}{unit_hint}'?)")  # fmt: skip
        raise BadInputError(f"{what} must be {forms}; got {text!r}")
    value = float(match["num"])
    if math.isnan(value):
        raise BadInputError(f"{what} must be {forms}; got {text!r}")
    return value, match["unit"]


def parse_budget(text: str) -> float:
    """Parse a latency budget (``10ms``, ``10 ms``, ``800us``, ``1s``) and return it in milliseconds.

    Raises:
        BadInputError: the text is not a positive, finite time with a unit.
    """
    value, unit = _parse(text, _TIME_RE, "budget", TIME_FORMS, "ms")
    value *= _TIME_UNITS[unit]
    if value <= 0:
        raise BadInputError(f"budget must be {TIME_FORMS}; got {text!r}, which is not greater than 0")
    if not math.isfinite(value):
        raise BadInputError(f"budget must be {TIME_FORMS}; got {text!r}, which is not finite")
    return value


def parse_size(text: str) -> int:
    """Parse a size limit (``500KB``, ``2 MB``, ``1.5MiB``) and return it in bytes.

    Raises:
        BadInputError: the text is not a finite size of at least one byte with a unit.
    """
    value, unit = _parse(text, _SIZE_RE, "size", SIZE_FORMS, "KB")
    value *= _SIZE_UNITS[unit.lower()]
    if not math.isfinite(value):
        raise BadInputError(f"size must be {SIZE_FORMS}; got {text!r}, which is not finite")
    if value < 1:
        raise BadInputError(f"size must be {SIZE_FORMS}; got {text!r}, which is less than 1 byte")
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
