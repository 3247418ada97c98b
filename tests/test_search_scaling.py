"""Search that scales and survives: shared storages (PostgreSQL, journal), concurrent workers,
SIGKILL + resume, the Ray backend, the GP sampler, warm start and successive halving.

All on the tiny space and a Fashion-MNIST subset."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import optuna.storages.journal
import pandas as pd
import pytest
import yaml

from autocompress.arch import plan
from autocompress.hardware.targets import get_target
from autocompress.search import SAMPLERS, make_sampler
from autocompress.search.fidelity import Halving
from autocompress.search.storage import open_storage
from autocompress.space import load_space
from tests.helpers import ROOT, cli, slow_tiny_space, tiny_latency_ms, tiny_mid_budget_us

SUBSET = "1500"  # as in test_search_e2e: one tiny supernet trained per test session
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


def _budget() -> str:
    return f"{tiny_mid_budget_us():.1f}us"


def _args(run_dir: Path, *extra: str, trials: int = 6, budget: str | None = None, space: str = "tiny") -> list[str]:
    # scaling and resume of the search itself: the finalize phase (tests/test_finalize.py) is off
    return ["search", "--space", space, "--target", "cpu", "--budget", budget or _budget(), "--subset", SUBSET,
            "--trials", str(trials), "--run-dir", str(run_dir), "--finalize", "0", *extra]  # fmt: skip


def _popen(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "autocompress", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _trial_numbers(stdout: str) -> set[int]:
    """Trial numbers a process reports as completed by itself ("trial  N: val ...")."""
    return {int(ln.split(":")[0].split()[1]) for ln in stdout.splitlines() if ln.startswith("trial ")}


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server tools as the postgres system user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1 (initdb into a temp dir, pg_ctl on a free port)."""
    if not PG_BIN:
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    bindir = PG_BIN[-1].parent
    tmp = Path(tempfile.mkdtemp(prefix="autocompress-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"]),
                   check=True, capture_output=True)  # fmt: skip
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off"
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"),
                                 "-w", "start"]), check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"  # the URL a user passes to --storage
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- unit


def test_halving_promotes_the_top_third_after_warm_up() -> None:
    h = Halving(eta=3)
    assert h.low_steps(0) is None and h.low_steps(1) is None  # no lower rung: full fidelity at once
    assert h.low_steps(20) == 7 and h.low_steps(200) == 67
    assert h.promote(0.1, []) and h.promote(0.1, [0.9, 0.8])  # the first eta are always promoted
    rung = [0.50, 0.60, 0.70, 0.80, 0.90]  # with this one, 6 results: the best 2 go on
    assert h.promote(0.85, rung)
    assert not h.promote(0.75, rung)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_is_reproducible_and_reads_the_budget_constraint(name: str) -> None:
    """Same seed, same proposals; the budget (real latency table) is an Optuna constraint the
    sampler sees: after its start-up trials the constraint-aware ones propose feasible networks
    more often than random search does."""
    space, table = load_space("tiny"), get_target("cpu").table
    budget = sum(tiny_latency_ms(c, space, table) for c in (space.smallest(), space.largest())) / 2

    def run(sampler_name: str, seed: int, n: int = 24) -> list[tuple[dict, bool]]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(sampler_name, seed))
        out = []
        for _ in range(n):
            trial = study.ask()
            cand = space.sample(trial)
            lat = tiny_latency_ms(cand, space, table)
            trial.set_constraint("latency", lat - budget)
            blocks = plan(cand, space, 1, 10)
            study.tell(trial, [sum(b.params() for b in blocks) / 1e4, lat])  # bigger is better, within budget
            out.append((trial.params, lat <= budget))
        return out

    n = 16 if name == "gp" else 24  # a GP fit per trial is the slow part: fewer trials for gp
    first, again = run(name, 7, n), run(name, 7, n)
    assert [p for p, _ in first] == [p for p, _ in again]
    assert [p for p, _ in first] != [p for p, _ in run(name, 8, 10)]
    if name in ("gp", "tpe"):
        later = [ok for _, ok in first[10:]]  # after the 8 random start-up trials
        rand = [ok for _, ok in run("random", 7, n)[10:]]
        assert sum(later) >= sum(rand), (sum(later), sum(rand))


# --------------------------------------------------------------------------- storages and workers


@pytest.mark.e2e
@pytest.mark.slow
def test_two_processes_share_a_postgres_study(postgres, tmp_path, fashion_dir) -> None:
    first = _popen(_args(tmp_path / "a", "--storage", postgres, trials=10))
    storage = open_storage(postgres)

    def started() -> bool:
        return first.poll() is not None or any(s.n_trials > 0 for s in optuna.get_all_study_summaries(storage, include_best_trial=False))

    second = None
    try:
        _wait_for(started, 900, "the first process to start its study")
        # the second worker joins from its own run directory while the first is mid-search
        second = _popen(_args(tmp_path / "b", "--storage", postgres, "--resume", trials=10))
        out_a, err_a = first.communicate(timeout=1500)
        out_b, err_b = second.communicate(timeout=1500)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0, err_a[-2000:]
    assert second.returncode == 0, err_b[-2000:]

    study = optuna.load_study(study_name="autocompress", storage=storage)
    trials = study.get_trials()
    complete = {t.number for t in trials if t.state.name == "COMPLETE"}
    by_a, by_b = _trial_numbers(out_a), _trial_numbers(out_b)
    assert by_a and by_b, "both processes evaluated trials"
    assert not by_a & by_b  # no trial was run by both
    assert by_a | by_b == complete  # and none was lost
    assert 10 <= len(complete) <= 11  # --trials counts the study's trials, not each process's
    assert [t.state.name for t in trials].count("FAIL") == 0  # the joiner stole no running trial
    evaluated = [t for t in trials if t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs]
    keys = [tuple(sorted(t.user_attrs["candidate"].items())) for t in evaluated]
    assert len(keys) == len(set(keys))  # no candidate evaluated twice
    for run in ("a", "b"):  # both run directories receive the results
        cfg = yaml.safe_load((tmp_path / run / "config.yaml").read_text())
        assert cfg["storage"]["url"] == postgres and cfg["storage"]["kind"] == "postgresql"
    final = pd.read_parquet(tmp_path / "b" / "trials.parquet")
    assert set(final[final["state"] == "COMPLETE"]["number"]) >= by_b
    # the resume command report.md gives names the shared study (without it, it reopened none)
    assert f"--resume --trials 40 --storage '{postgres}'" in (tmp_path / "a" / "report.md").read_text()


def test_the_resume_command_of_a_run_on_a_password_database_says_where_the_password_goes(tmp_path) -> None:
    from autocompress.results import storage_arg

    cfg = {"storage": {"url": "postgresql://ac:***@127.0.0.1:5432/studies", "kind": "postgresql"}}
    assert storage_arg(cfg, tmp_path) == (" --storage 'postgresql://ac:***@127.0.0.1:5432/studies'"
                                          "   # put the password in place of ***")  # fmt: skip
    own = {"storage": {"url": f"sqlite:///{(tmp_path / 'study.db').resolve()}", "kind": "sqlite"}}
    assert storage_arg(own, tmp_path) == ""  # the run's own study.db: --resume finds it


@pytest.mark.e2e
@pytest.mark.slow
def test_sigkill_mid_trial_then_resume_on_a_journal_storage(tmp_path, fashion_dir) -> None:
    run_dir, journal = tmp_path / "killed", tmp_path / "shared" / "study.log"
    space = str(slow_tiny_space(tmp_path))  # trials of seconds: one is surely in flight at the kill
    proc = _popen(_args(run_dir, "--storage", f"journal:{journal}", trials=5, space=space))
    storage = None

    def running_after_one_complete() -> bool:
        nonlocal storage
        if not journal.is_file() or proc.poll() is not None:
            return proc.poll() is not None
        storage = storage or optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
        try:
            study = optuna.load_study(study_name="autocompress", storage=storage)
        except KeyError:
            return False
        states = [t.state.name for t in study.get_trials()]
        return states.count("COMPLETE") >= 1 and "RUNNING" in states

    try:
        _wait_for(running_after_one_complete, 900, "a trial in flight")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    code = proc.wait()
    study = optuna.load_study(study_name="autocompress", storage=storage)
    kept = {t.number: t.values for t in study.get_trials() if t.state.name == "COMPLETE"}
    in_flight = [t.number for t in study.get_trials() if t.state.name == "RUNNING"]
    assert kept and in_flight, f"exit {code}: {proc.communicate()[1][-2000:]}"

    # --resume without --storage: the run's config says where its study lives
    resumed = cli(*_args(run_dir, "--resume", trials=5, space=space), timeout=1500)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = pd.read_parquet(run_dir / "trials.parquet")
    done = after[after["state"] == "COMPLETE"].set_index("number")
    assert len(done) == 5 and after["number"].is_unique
    assert (after["state"] == "RUNNING").sum() == 0
    for n, values in kept.items():  # nothing completed before the kill was lost or changed
        assert done.loc[n, "val_accuracy"] == values[0]
    failed = sorted(after[after["state"] == "FAIL"]["number"])
    assert failed == sorted(in_flight)
    assert sorted(after["retry_of"].dropna().astype(int)) == failed  # each retried exactly once
    assert not (run_dir / "study.db").exists()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_sqlite_storage_in_a_new_folder_is_created_as_a_journal_is(tmp_path) -> None:
    """``--storage sqlite:///shared/study.db`` with no ``shared/`` yet failed with SQLite's "unable to
    open database file" while ``journal:shared/study.log`` made its folder; a folder under a file
    is refused in one line."""
    from autocompress.exceptions import RunDirError

    for spec in (f"sqlite:///{tmp_path / 'shared' / 'db' / 'study.db'}", f"journal:{tmp_path / 'shared2' / 'study.log'}"):
        optuna.create_study(study_name="s", storage=open_storage(spec)).ask()
    assert (tmp_path / "shared" / "db" / "study.db").is_file() and (tmp_path / "shared2" / "study.log").is_file()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirError, match="cannot create .*afile/sub: Not a directory"):
        open_storage(f"sqlite:///{tmp_path / 'afile' / 'sub' / 'study.db'}")


# pytest resets warning filters per test; the product silences this one in autocompress.search.storage
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_worker_on_another_host_that_stops_its_heartbeat_is_failed_and_requeued(tmp_path, monkeypatch) -> None:
    """Another host's pid cannot be checked from here; its heartbeat can. A trial whose worker
    stopped beating for longer than the grace period is failed and its params queued again
    (once, though two processes look); a trial whose worker still beats is left running."""
    from autocompress.search import storage as st

    monkeypatch.setattr(st, "HEARTBEAT_S", 1)
    monkeypatch.setattr(st, "GRACE_S", 3)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=st.open_storage(url), directions=["maximize"])
    dead, alive, silent = study.ask(), study.ask(), study.ask()
    for trial, worker in ((dead, "gpu-box-7:4242"), (alive, "gpu-box-8:77"), (silent, "gpu-box-9:5")):
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr(st.WORKER_ATTR, worker)
    study._storage.record_heartbeat(dead._trial_id)  # ... then its host lost power
    other = optuna.load_study(study_name="s", storage=st.open_storage(url))  # a second process
    with st.heartbeat(study, alive):
        time.sleep(st.GRACE_S + 2)
        st.fail_stale(study)
        st.fail_stale(other)
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[dead.number] == "FAIL"
    assert states[alive.number] == "RUNNING"  # beating: not stale
    assert states[silent.number] == "RUNNING"  # no heartbeat ever: nothing to judge it by
    retries = [t for t in study.get_trials() if t.state.name == "WAITING"]
    assert len(retries) == 1 and retries[0].user_attrs["retry_of"] == dead.number
    again = study.ask()  # the retry is the next trial handed out, with the dead trial's params
    assert again.number == retries[0].number and again.suggest_float("x", 0, 1) == dead.params["x"]


# --------------------------------------------------------------------------- backends and samplers


@pytest.mark.e2e
@pytest.mark.slow
def test_ray_backend_runs_two_trials_at_once(tmp_path, fashion_dir) -> None:
    pytest.importorskip("ray.tune")
    run_dir = tmp_path / "ray"
    proc = cli(*_args(run_dir, "--backend", "ray", "--workers", "2", trials=4), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    trials = pd.read_parquet(run_dir / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    assert len(done) == 4 and trials["number"].is_unique
    assert list(done["seeded"].iloc[:2]) == ["largest", "smallest"]  # the enqueued trials ran first
    assert all(Path(p).is_file() for p in done["model_path"])
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (done["feasible"] == (done["latency_ms"] <= cfg["budget_ms"])).all()
    assert cfg["backend"] == {"name": "ray", "workers": 2}
    study = optuna.load_study(study_name="autocompress", storage=f"sqlite:///{run_dir / 'study.db'}")
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.get_trials() if t.state.name == "COMPLETE")
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "no two Ray trials overlapped"
    assert len(pd.read_csv(run_dir / "pareto.csv")) >= 1


@pytest.mark.e2e
@pytest.mark.slow
def test_ctrl_c_stops_a_ray_search_as_it_stops_a_local_one(tmp_path, fashion_dir) -> None:
    """Ray Tune caught Ctrl-C itself: the command exited 0, printed the results as if finished and
    offered Tune's Tuner.restore. Now: exit 130, the one "interrupted" line, --resume goes on."""
    pytest.importorskip("ray.tune")
    run_dir = tmp_path / "ray-int"
    proc = _popen(_args(run_dir, "--backend", "ray", "--workers", "2", trials=30))
    storage = f"sqlite:///{run_dir / 'study.db'}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(1)
        try:
            study = optuna.load_study(study_name="autocompress", storage=storage)
        except Exception:  # not created yet
            continue
        if any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
            break
    assert proc.poll() is None, "the search ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (out[-2000:], err[-3000:])
    assert "interrupted; completed trials are kept" in err and "Tuner.restore" not in out + err


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory, fashion_dir):
    run_dir = tmp_path_factory.mktemp("runs") / "halving"
    # random sampler, seed 1: trial 1 (the smallest network) is feasible at full fidelity and the
    # 20-step candidates that follow include over-budget ones, which stay at the low fidelity
    proc = cli(*_args(run_dir, "--fidelity", "halving", "--eta", "2", "--sampler", "random", "--seed", "1",
                      trials=5), timeout=1500)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir, proc


@pytest.mark.e2e
@pytest.mark.slow
def test_halving_keeps_low_fidelity_results_out_of_the_pareto_set(halving_run) -> None:
    run_dir, proc = halving_run
    trials = pd.read_parquet(run_dir / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    low = done[done["fidelity"] == "low"]
    full = done[done["fidelity"] == "full"]
    assert len(low) >= 1 and len(full) >= 1
    # a low-fidelity accuracy was measured after ceil(steps / eta) fine-tune steps
    assert (low["trained_steps"] == (low["finetune_steps"] + 1) // 2).all()
    assert (full["trained_steps"] == full["finetune_steps"]).all()
    promoted = full[full["low_val_accuracy"].notna()]
    assert (promoted["low_steps"] == (promoted["finetune_steps"] + 1) // 2).all()
    # over-budget candidates never get the full fine-tune
    assert not (full["low_val_accuracy"].notna() & ~full["feasible"]).any()
    front = pd.read_csv(run_dir / "pareto.csv")
    assert len(front) >= 1 and (front["fidelity"] == "full").all()
    assert not set(front["number"]) & set(low["number"])
    assert "(low fidelity)" in proc.stdout
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["fidelity"] == {"mode": "halving", "eta": 2}
    assert (f"- fidelity: successive halving (eta 2): {len(low)} trial(s) stayed at the short fine-tune"
            in (run_dir / "report.md").read_text())  # fmt: skip


@pytest.mark.e2e
@pytest.mark.slow
def test_warm_start_enqueues_the_earlier_pareto_set_first_with_the_gp_sampler(halving_run, tmp_path) -> None:
    first, _ = halving_run
    front = pd.read_csv(first / "pareto.csv")
    assert len(front) >= 1
    run_dir = tmp_path / "warm"
    proc = cli(*_args(run_dir, "--warm-start", str(first), "--sampler", "gp", trials=len(front) + 1), timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = pd.read_parquet(run_dir / "trials.parquet").sort_values("number")
    assert (trials["state"] == "COMPLETE").sum() == len(front) + 1
    head = trials.iloc[: len(front)]
    dims = list(load_space("tiny").dimensions())
    want = {tuple(str(r[d]) for d in dims) for _, r in front.iterrows()}
    assert {tuple(str(r[d]) for d in dims) for _, r in head.iterrows()} == want
    assert head["warm_start"].notna().all()
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["warm_start"]["candidates"] == len(front) and cfg["sampler"] == "gp"
    line = f"warm start: {len(front)} of the {len(front)} Pareto candidates of {first} enqueued first"
    assert line in proc.stdout + proc.stderr and f"- {line}\n" in (run_dir / "report.md").read_text()
    # a space that cannot express them (another fine-tune length): the run says how many it left out
    other = tmp_path / "other"
    proc = cli(*_args(other, "--warm-start", str(first), trials=2, space=str(slow_tiny_space(tmp_path, 30))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = f"warm start: 0 of the {len(front)} Pareto candidates of {first} enqueued first; {len(front)} lie outside"
    assert line in proc.stdout + proc.stderr and line in (other / "report.md").read_text()


def test_bad_scaling_options_are_one_line_errors(tmp_path) -> None:
    from tests.helpers import assert_one_line_error

    assert_one_line_error(cli(*_args(tmp_path / "x", "--storage", "redis://h")), 2, "--storage must be")
    assert_one_line_error(cli(*_args(tmp_path / "x", "--fidelity", "quarter")), 2, "--fidelity must be one of")
    assert_one_line_error(cli(*_args(tmp_path / "x", "--workers", "2")), 2, "--workers and --address need")
    assert_one_line_error(cli(*_args(tmp_path / "x", "--warm-start", str(tmp_path))), 2, "cannot warm-start")
    assert not (tmp_path / "x" / "config.yaml").exists()
