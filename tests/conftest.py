from __future__ import annotations

import os
from pathlib import Path

import pytest

from autocompress.data_files import find_fashion_mnist

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


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory, fashion_dir: Path) -> Path:
    """A finished `autocompress search` on the tiny space (5 trials, Fashion-MNIST subset), with a
    budget half-way between the smallest and the largest network (the data subset and seed of
    test_search_e2e, so one session trains the tiny supernet once): the fp32 teacher (trial 0) is
    over budget, the smallest (trial 1) within it. Shared by the export and explorer tests."""
    from tests.helpers import cli, tiny_mid_budget_us

    run_dir = tmp_path_factory.mktemp("small-run") / "tiny-run"
    proc = cli("search", "--space", "tiny", "--target", "cpu", "--budget", f"{tiny_mid_budget_us():.1f}us",
               "--subset", "1500", "--trials", "5", "--sampler", "random", "--run-dir", str(run_dir))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir
