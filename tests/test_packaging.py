"""The wheel ships the search spaces and latency tables: built from a copy of the checkout,
installed into a folder of its own and run from elsewhere, it lists every target and runs a
search. An editable install finds the checkout's folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from autocompress.exceptions import WriteError
from tests.helpers import ROOT

pytestmark = [pytest.mark.e2e]
TARGETS = sorted(p.name for p in (ROOT / "hw_latency_tables").iterdir() if (p / "device.yaml").is_file())
SPACES = sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml"))
# what a build must not see: outputs of earlier builds (stale build/lib files would enter the wheel)
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                     ".*_cache", "tests", "benchmarks", "docs")  # fmt: skip


def _pip(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "-q", *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUTOCOMPRESS_TABLES")}
    return {**env, "COLUMNS": "200", **extra}


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the checkout's sources (what `pip install .` on a fresh clone sees)."""
    folder = tmp_path_factory.mktemp("pkg") / "src"
    shutil.copytree(ROOT, folder, ignore=NOT_SOURCES)
    return folder


@pytest.fixture(scope="module")
def wheel(src: Path) -> Path:
    dist = src.parent / "dist"
    _pip("wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(dist))
    (found,) = dist.glob("autocompress-*.whl")
    return found


@pytest.fixture(scope="module")
def site(wheel: Path) -> Path:
    folder = wheel.parent.parent / "site"
    _pip("install", "--no-deps", "--target", str(folder), str(wheel))
    return folder


def _installed(
    site: Path, cwd: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess:
    """Python with only the installed copy on PYTHONPATH (not the checkout), run in ``cwd``."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=_env(PYTHONPATH=str(site), **env))  # fmt: skip


def test_the_wheel_holds_every_target_table_every_space_and_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for target in TARGETS:
        for f in ("device.yaml", "blocks.csv"):
            assert f"autocompress/hw_latency_tables/{target}/{f}" in names, (target, f)
    assert len(TARGETS) == 9
    for space in SPACES:
        assert f"autocompress/search_spaces/{space}" in names
    assert set(SPACES) == {"fashion_mnist.yaml", "mobilenet_rgb.yaml", "tiny.yaml"}
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "autocompress").rglob("*.py")}
    assert modules <= names, sorted(modules - names)  # no package was left out of the wheel
    assert not any(n.startswith(("search_spaces/", "hw_latency_tables/", "tests/")) for n in names)


def test_the_installed_copy_lists_every_target_from_another_folder(site: Path, tmp_path: Path) -> None:
    proc = _installed(site, tmp_path, "-c", "import autocompress; print(autocompress.__file__)")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(site)  # the installed copy, not the checkout
    proc = _installed(site, tmp_path, "-m", "autocompress", "targets")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for target in TARGETS:
        assert target in proc.stdout, target
    proc = _installed(
        site, tmp_path, "-c", "from autocompress.space import load_space; print(load_space('tiny').name)"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "tiny", proc.stderr[-2000:]


def test_user_tables_come_first_in_the_installed_copy(site: Path, tmp_path: Path) -> None:
    user = tmp_path / "tables"
    shutil.copytree(
        site / "autocompress" / "hw_latency_tables" / "x86-cpu-onnxruntime", user / "x86-cpu-onnxruntime"
    )
    code = ("from autocompress.hardware.targets import get_target, new_table_folder; "
            "print(get_target('cpu').folder); print(new_table_folder('x86-cpu-onnxruntime'))")  # fmt: skip
    proc = _installed(site, tmp_path, "-c", code, AUTOCOMPRESS_TABLES=str(user))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(user / "x86-cpu-onnxruntime")] * 2


@pytest.mark.slow
def test_the_installed_copy_runs_a_tiny_search(site: Path, tmp_path: Path, fashion_dir: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _installed(site, tmp_path, "-m", "autocompress", "search", "--space", "tiny", "--target", "cpu",
                      "--budget", "1ms", "--trials", "2", "--subset", "600", "--run-dir", str(run_dir),
                      timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert (trials["state"] == "COMPLETE").sum() == 2
    assert (run_dir / "report.md").is_file() and "Accuracy–latency front" in proc.stdout
    assert "--space tiny " in proc.stdout  # the resume hint names the shipped space, not its installed path


def test_an_editable_install_reads_the_checkouts_folders(src: Path, tmp_path: Path) -> None:
    """`make` installs with `pip install -e .`: there the package has no data folders inside it,
    and the checkout's top-level ones are used."""
    target = tmp_path / "editable"
    _pip("install", "-e", str(src), "--no-deps", "--no-build-isolation", "--target", str(target))
    shutil.rmtree(src / "build", ignore_errors=True)
    # -S: none of this venv's own .pth files (its editable autocompress); its packages for the deps
    code = (f"import site, sys; site.addsitedir({str(target)!r}); sys.path.append({sysconfig.get_paths()['purelib']!r}); "
            "import autocompress, autocompress.space as s, autocompress.hardware.targets as t; "
            "print(autocompress.__file__, s.SPACES_DIR, t.TABLES_DIR, len(t.list_targets()), s.load_space('tiny').name)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    module, spaces, tables, n, tiny = proc.stdout.split()
    assert Path(module).is_relative_to(src / "autocompress")
    assert (Path(spaces), Path(tables)) == (src / "search_spaces", src / "hw_latency_tables")
    assert int(n) == len(TARGETS) and tiny == "tiny"


def test_writing_into_read_only_shipped_tables_says_where_to_write(monkeypatch, tmp_path: Path) -> None:
    """An installed package's folder may not be writable: profile, calibrate and estimate-table
    then say in one line to use a folder of one's own in $AUTOCOMPRESS_TABLES."""
    from autocompress.hardware import targets

    def read_only(folder: Path, what: str = "") -> Path:
        raise WriteError(f"cannot write to {what} {folder}: Permission denied")

    monkeypatch.setattr(targets, "ensure_writable_dir", read_only)
    with pytest.raises(WriteError) as exc:
        targets.check_writable(targets.TABLES_DIR / "jetson-nano")
    msg = str(exc.value)
    assert "Permission denied" in msg and "AUTOCOMPRESS_TABLES" in msg and "\n" not in msg
    assert f"cp -r {targets.TABLES_DIR / 'jetson-nano'} ~/tables/" in msg
    with pytest.raises(WriteError) as exc:  # a folder of the user's own: the plain message
        targets.check_writable(tmp_path / "mine")
    assert "AUTOCOMPRESS_TABLES" not in str(exc.value)
    monkeypatch.setenv("AUTOCOMPRESS_TABLES", str(tmp_path / "mine"))
    assert targets.new_table_folder("x86-cpu-onnxruntime") == tmp_path / "mine" / "x86-cpu-onnxruntime"
