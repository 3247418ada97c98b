"""The Streamlit Pareto explorer (``autocompress explore``). ``logic`` holds everything that can be
tested without Streamlit; ``explorer.py`` is the thin Streamlit page over it."""

from __future__ import annotations

from pathlib import Path

EXPLORER = Path(__file__).resolve().parent / "explorer.py"

__all__ = ["EXPLORER"]
