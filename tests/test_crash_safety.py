"""Crash safety: SIGKILL at any moment loses nothing that was complete and leaves no file that
looks complete but is not (supernet cache, run directory, written files)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx
import optuna
import pandas as pd
import pytest
import torch
import yaml

from tests.helpers import ROOT, micro_space_text

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MICRO = micro_space_text()
KILLS = 5
UNBOUNDED = 10_000  # the killed searches ask for more trials than they can run before their kill


def _cmd() -> list[str]:
    script = Path(sys.executable).parent / "autocompress"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "autocompress"]


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory, fashion_dir: Path) -> tuple[Path, dict[str, str]]:
    """The micro space file and an environment with a supernet cache of this module's own."""
    root = tmp_path_factory.mktemp("micro")
    (root / "micro.yaml").write_text(MICRO)
    env = {**os.environ, "COLUMNS": "200", "AUTOCOMPRESS_CACHE": str(root / "cache")}
    return root / "micro.yaml", env


def _search_args(space: Path, run_dir: Path, *extra: str, trials: int = UNBOUNDED) -> list[str]:
    return [*_cmd(), "search", "--space", str(space), "--target", "cpu", "--budget", "1s", "--subset", "300",
            "--sampler", "random", "--trials", str(trials), "--run-dir", str(run_dir), *extra]  # fmt: skip


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".part"))] if folder.exists() else []


def test_sigkill_during_supernet_training_leaves_no_cache_entry(micro, tmp_path) -> None:
    space, env = micro
    env = {**env, "AUTOCOMPRESS_CACHE": str(tmp_path / "cache")}
    cache = tmp_path / "cache" / "supernets"
    args = _search_args(space, tmp_path / "run", trials=1)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:  # the first progress line of the training: kill it there
        seen += line
        if "training supernet: step" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "training supernet: step" in seen and "step 10/10" not in seen, seen[-500:]
    # nothing in the cache looks like a trained supernet
    assert not list(cache.glob("*.pt")) and not list(cache.glob("*.json"))

    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained in" in done.stdout  # retrained from scratch, and the run finished
    (weights,) = cache.glob("*[0-9].pt")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and state
    assert len(list(cache.glob("*.json"))) == 1


def _completed(run_dir: Path) -> dict[int, tuple[float, ...]]:
    """Completed trials in the study database (the source of truth), number -> objective values."""
    if not (run_dir / "study.db").is_file():
        return {}
    study = optuna.load_study(study_name="autocompress", storage=f"sqlite:///{run_dir / 'study.db'}")
    return {t.number: tuple(t.values) for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE}  # fmt: skip


def _assert_valid_run_dir(run_dir: Path) -> None:
    """Every file a user sees is whole: config parses, tables read, every model loads."""
    if (run_dir / "config.yaml").exists():
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["target"] == "x86-cpu-onnxruntime"
    if (run_dir / "trials.parquet").exists():
        trials = pd.read_parquet(run_dir / "trials.parquet")
        assert trials["number"].is_unique
    if (run_dir / "pareto.csv").exists() and (run_dir / "pareto.csv").stat().st_size > 1:
        assert "number" in pd.read_csv(run_dir / "pareto.csv")
    for model in (run_dir / "models").glob("trial_*.onnx"):
        onnx.checker.check_model(onnx.load(str(model)))


def _run_and_kill(args: list[str], env: dict[str, str], anchor: str, delay: float) -> bool:
    """Start a search; SIGKILL it ``delay`` seconds after the start (``anchor="start"``) or after
    its first completed trial (``"trial"``). True if it was killed, False if it ended first."""
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first_trial = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("trial "):
                first_trial.set()
        first_trial.set()  # ended

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    if anchor == "trial":
        first_trial.wait(timeout=300)
    try:
        proc.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = True
    reader.join(timeout=10)
    return killed


def test_sigkill_at_random_moments_loses_no_completed_trial(micro, tmp_path) -> None:
    """Kills alternate between a random moment of the start-up (imports, data, supernet, study)
    and a random moment after the first trial of that process (trials, exports, result writes)."""
    space, env = micro
    run_dir = tmp_path / "run"
    rng = random.Random(9)
    kept: dict[int, tuple[float, ...]] = {}
    kills = []
    for i in range(KILLS):
        resume = ["--resume"] if (run_dir / "study.db").is_file() else []
        anchor = "start" if i % 2 else "trial"
        delay = rng.uniform(2.0, 10.0) if anchor == "start" else rng.uniform(0.0, 3.0)
        killed = _run_and_kill(_search_args(space, run_dir, *resume), env, anchor, delay)
        now = _completed(run_dir)
        kills.append((anchor, round(delay, 1), killed, len(now)))
        for number, values in kept.items():  # nothing completed earlier was lost or changed
            assert now.get(number) == values, (number, values, now.get(number), kills)
        kept = now
        _assert_valid_run_dir(run_dir)
    assert sum(k[2] for k in kills) >= KILLS - 1, kills  # the kills really interrupted runs

    total = len(kept) + 3  # the last resume finishes the study: three more trials
    final = subprocess.run(_search_args(space, run_dir, "--resume", trials=total), cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert final.returncode == 0, final.stderr[-2000:]
    done = _completed(run_dir)
    assert len(done) == total, kills
    assert all(done[n] == v for n, v in kept.items())
    _assert_valid_run_dir(run_dir)
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert trials["number"].is_unique and (trials["state"] == "RUNNING").sum() == 0
    assert (trials["state"] == "COMPLETE").sum() == total
    retried = trials["retry_of"].dropna().astype(int).tolist()
    assert len(retried) == len(set(retried))  # an interrupted trial is retried once, not twice
    assert sorted(retried) == sorted(trials[trials["state"] == "FAIL"]["number"])
    for path in trials[trials["state"] == "COMPLETE"]["model_path"]:
        assert Path(path).is_file()
    assert not _temp_files(run_dir)  # a resume clears what the kills left
    print(f"kills (anchor, delay s, killed, completed trials after it): {kills}")


WRITER = """
import sys
from autocompress._io import atomic_write_text
path, n = sys.argv[1], int(sys.argv[2])
for i in range(10**6):
    atomic_write_text(path, str(i % 10) * n)
"""


def test_sigkill_during_atomic_writes_never_leaves_a_partial_file(tmp_path) -> None:
    """The primitive every result file, table, cache entry and exported model goes through."""
    target = tmp_path / "out.txt"
    n = 4_000_000
    whole = {hashlib.sha256((str(d) * n).encode()).hexdigest() for d in range(10)}
    rng = random.Random(3)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(n)], cwd=ROOT)
        time.sleep(rng.uniform(1.0, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():
            assert hashlib.sha256(target.read_bytes()).hexdigest() in whole
    assert target.exists()


def test_results_and_tables_are_written_readable_by_others(tmp_path) -> None:
    """Files go through a temporary name (mkstemp: owner-only) and a rename: they once kept
    0600, so a table or a run in a shared folder was unreadable to everyone else. Now a file
    gets what an ordinary create gives: 0666 less the process's umask (0644 under 022)."""
    import stat

    from autocompress._io import atomic_write_text

    for umask in (0o022, 0o077):  # the umask of the moment, not the one at import
        old = os.umask(umask)
        try:
            atomic_write_text(tmp_path / f"device{umask}.yaml", "name: x\n")
            plain = tmp_path / f"plain{umask}.txt"
            plain.write_text("x")  # an ordinary create, for comparison
        finally:
            os.umask(old)
        mode = stat.S_IMODE((tmp_path / f"device{umask}.yaml").stat().st_mode)
        assert mode == 0o666 & ~umask == stat.S_IMODE(plain.stat().st_mode)
