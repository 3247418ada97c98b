"""Where the data autocompress ships lives: its search spaces and latency tables.

An installed wheel holds them as package data (``autocompress/search_spaces/``,
``autocompress/hw_latency_tables/``, mapped from the repository's top-level folders by
pyproject.toml and setup.py) and they are found with ``importlib.resources``. A checkout (an
editable install, or ``PYTHONPATH`` pointing at it) has no such folders inside the package: there
the repository's top-level ``search_spaces/`` and ``hw_latency_tables/`` are the shipped data.
Either way the answer is a real folder, because ``profile``, ``calibrate`` and ``estimate-table``
write tables into it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

SPACES = "search_spaces"
TABLES = "hw_latency_tables"


@cache
def shipped_dir(name: str) -> Path:
    """The folder of shipped data ``name`` (``SPACES`` or ``TABLES``): inside the installed
    package, else the checkout's top-level folder."""
    inside = resources.files("autocompress") / name
    if inside.is_dir():  # a wheel (or any non-editable install): package data beside the code
        return Path(str(inside))
    return Path(__file__).resolve().parent.parent / name  # a checkout: the repository's folder


def spaces_dir() -> Path:
    """The shipped search spaces (``tiny.yaml``, ``fashion_mnist.yaml``, ``mobilenet_rgb.yaml``)."""
    return shipped_dir(SPACES)


def tables_dir() -> Path:
    """The shipped latency tables, one folder per target."""
    return shipped_dir(TABLES)


def is_shipped(folder: Path) -> bool:
    """Whether ``folder`` lies inside the shipped tables."""
    return Path(folder).resolve().is_relative_to(tables_dir().resolve())
