"""The package list for setuptools (everything else is in pyproject.toml): every ``autocompress*``
package, plus the repository's top-level ``search_spaces/`` and ``hw_latency_tables/``, which
pyproject.toml maps to ``autocompress.search_spaces`` and ``autocompress.hw_latency_tables`` so
the wheel ships them as package data. pyproject.toml alone cannot both discover packages and add
mapped ones."""

from setuptools import find_namespace_packages, setup

SHIPPED_DATA = ["autocompress.search_spaces", "autocompress.hw_latency_tables"]

setup(packages=[*find_namespace_packages(include=["autocompress", "autocompress.*"], exclude=["*.__pycache__"]),
                *SHIPPED_DATA])  # fmt: skip
