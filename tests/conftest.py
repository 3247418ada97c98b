from __future__ import annotations

import os
from pathlib import Path

import pytest

from autocompress.data import find_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Supernets trained by tests go to a per-session cache, never the user's."""
    os.environ["AUTOCOMPRESS_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    folder = find_fashion_mnist()
    if folder is None:
        pytest.fail("Fashion-MNIST is missing: 'sudo apt-get install dataset-fashion-mnist' (make test does this)")
    return folder
