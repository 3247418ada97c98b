"""Where a study lives (SQLite, PostgreSQL, journal file), and which of its running trials really run.

    (default)               sqlite:///<run dir>/study.db   one machine, one or a few processes
    postgresql://user@host/db                              many processes or machines
    journal:PATH            optuna JournalStorage over a JournalFileBackend (one file, file locks)

Several ``autocompress search --resume`` processes can share one study. Every trial records
the worker that runs it (``host:pid``); a process that resumes fails and re-queues only the
RUNNING trials whose worker is gone, so it never steals a trial another live process is
evaluating.

Workers on other hosts cannot be asked whether they live, so on the database storages
(PostgreSQL, SQLite) every running trial also carries Optuna's heartbeat: its worker records
one every ``HEARTBEAT_S`` seconds, and a RUNNING trial with no heartbeat for ``GRACE_S`` (the
database server's clock, so hosts' clocks need not agree) is failed and re-queued by whichever
process looks next (``optuna.storages.fail_stale_trials`` before every new trial, and at
resume). The journal storage has no heartbeat: there, another host's dead trial waits until a
process on its own host resumes.

Either way the retry is Optuna's: ``RetryHeartbeatStaleTrialCallback`` adds a WAITING copy of
the dead trial (same params), the next trial ``study.ask()`` hands out. What Optuna cannot do is
the first check: its only test of liveness is the heartbeat, which the journal storage lacks and
which needs ``GRACE_S`` to pass; a pid on this host is asked at once (``worker_alive``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import socket
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from autocompress._io import path_kind
from autocompress.exceptions import BadInputError, RunDirError

WORKER_ATTR = "worker"
# A RUNNING trial with no worker recorded yet is young (ask() and set_user_attr are two writes);
# older than this its process died between them (or predates worker records): interrupted.
UNOWNED_GRACE = timedelta(seconds=5)  # the two writes are milliseconds apart, even on a busy server
HEARTBEAT_S = 20  # a running trial's worker writes a heartbeat this often (database storages) ...
GRACE_S = 120  # ... and after this long without one the trial is stale (its worker died)
# Optuna warns on study.ask() with a heartbeat storage; our ask/tell loop beats itself (heartbeat())
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]*)(@)")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_URL = re.compile(r"^(sqlite|postgresql|postgresql\+\w+|mysql|mysql\+\w+)://")
_FORMS = "--storage must be postgresql://…, sqlite:///PATH or journal:PATH"


def check_storage_spec(spec: str | None) -> None:
    """Refuse an unsupported or malformed ``--storage`` in one line, before a run directory or
    any file is created (it creates, opens and connects to nothing).

    Scheme names are lowercase, as the message lists them (``SQLITE:///x.db`` is refused with a
    did-you-mean). The file of ``sqlite:///PATH`` or ``journal:PATH`` may not exist yet, but if
    it does it must be a regular file (only stat'ed: a FIFO would block SQLite or the journal).

    Raises:
        BadInputError: naming the rule and the value (its password redacted).
    """
    if not spec:
        return
    scheme, sep, rest = spec.partition(":")
    fixed = f"{scheme.lower()}:{rest}"
    if sep and fixed != spec and (fixed.startswith("journal:") or _URL.match(fixed)):
        raise BadInputError(f"{_FORMS} (the scheme in lowercase); got {redact(spec)!r}, did you mean {redact(fixed)!r}?")
    if spec.startswith("journal:"):
        path = spec.removeprefix("journal:")
        if not path.strip():
            raise BadInputError("--storage journal:PATH needs a file path, e.g. journal:runs/study.log")
    elif spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:///") if spec.startswith("sqlite:///") else ""
        if not path.strip():
            raise BadInputError(f"--storage sqlite:///PATH needs a file path, e.g. sqlite:///runs/study.db; got {spec!r}")
    elif _URL.match(spec):
        database_url(spec)  # its driver is installed (imported, nothing opened)
        return
    else:
        raise BadInputError(f"{_FORMS}; got {redact(spec)!r}")
    kind = path_kind(Path(path).expanduser())
    if kind not in (None, "a file"):
        raise BadInputError(f"--storage {spec}: {path} is {kind}, not a regular file")


def database_url(spec: str) -> str:
    """The SQLAlchemy URL of a database ``--storage``, once its driver is known to import.

    Raises:
        BadInputError: no driver for the URL's database is installed (checked by importing it,
            before any run directory, data or torch: a typo in a scheme costs a second).
    """
    url = spec
    if spec.startswith("postgresql://"):
        # SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3; the extra installs psycopg2
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:
            if importlib.util.find_spec("psycopg2") is None:
                raise BadInputError(
                    "--storage postgresql://… needs psycopg2: pip install 'autocompress[postgres]'"
                )
            url = "postgresql+psycopg2://" + spec.removeprefix("postgresql://")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url).get_dialect().import_dbapi()
    except ImportError as exc:
        raise BadInputError(f"cannot open storage {redact(spec)}: its database driver is not installed "
                            f"({exc}); use postgresql://…, sqlite:///PATH or journal:PATH") from None  # fmt: skip
    except ArgumentError as exc:  # an unknown dialect or driver name after the scheme
        raise BadInputError(f"cannot open storage {redact(spec)}: {exc}") from None
    except ValueError:  # a port that is not a number, an unclosed [ipv6] host: the URL cannot be read
        raise BadInputError(f"--storage {redact(spec)} is not a valid database URL (its host or port cannot be "
                            "read); e.g. postgresql://USER:PASSWORD@127.0.0.1:5432/DB") from None  # fmt: skip
    return url


def resolve_storage(spec: str | None, run_dir: Path, study_file: str) -> str:
    """The storage a run uses, as written in its config: a URL or ``journal:ABSOLUTE_PATH``."""
    if not spec:
        return f"sqlite:///{(run_dir / study_file).resolve()}"
    check_storage_spec(spec)
    if spec.startswith("journal:"):
        return f"journal:{Path(spec.removeprefix('journal:')).expanduser().resolve()}"
    return spec


def redact(spec: str) -> str:
    """The storage URL with its password replaced, for config files and messages."""
    return _PASSWORD.sub(r"\1***\3", spec)


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """Open an Optuna storage; one clear error when the database cannot be reached."""
    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(spec.removeprefix("journal:"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise RunDirError(f"cannot open journal storage {path}: {exc.strerror or exc}") from None
    if "***" in spec:
        raise BadInputError("the run's config records the storage without its password; pass --storage again")
    if spec.startswith("sqlite:///"):  # its folder made as a journal's is (SQLite said "unable to open database file")
        folder = Path(spec.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot open storage {spec}: cannot create {folder}: {exc.strerror or exc}") from None
    url = database_url(spec)
    try:
        # pool_pre_ping: a shared database may drop idle connections during a long trial;
        # the heartbeat arguments are "experimental" in Optuna 5 (stable since 2.x in fact)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, message=".*heartbeat")
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"pool_pre_ping": True} if "sqlite" not in url else None,
            heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, heartbeat_stale_trial_callback=requeue_stale,
        )  # fmt: skip
    except Exception as exc:  # sqlalchemy's OperationalError and friends; the message is one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(f"cannot open storage {redact(spec)}: {first}") from None


def study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def worker_alive(worker: str | None) -> bool | None:
    """True/False for a worker on this host; None when it runs elsewhere (cannot be checked)."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def interrupted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose worker is gone (killed, crashed, powered off on this host)."""
    now = datetime.now()
    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get(WORKER_ATTR)
        if worker is None:
            if t.datetime_start is not None and now - t.datetime_start < UNOWNED_GRACE:
                continue
            stale.append(t)
        elif worker_alive(worker) is False:
            stale.append(t)
    return stale


def live_foreign_trials(study: optuna.Study) -> int:
    """RUNNING trials some other live worker is evaluating right now."""
    me = worker_id()
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get(WORKER_ATTR) not in (None, me) and worker_alive(t.user_attrs.get(WORKER_ATTR)) is not False
    )


class _Retry(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry (a WAITING copy of the trial, same params), carrying over of the dead
    trial's attributes only ``retry_of``, its ``seeded`` role (a retried teacher is still the
    teacher) and Optuna's retry history: its worker, candidate and sampler state belong to the
    run that died (a copied worker would mark the retry as dead)."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        clean = copy.copy(trial)
        seeded = trial.user_attrs.get("seeded")
        clean.user_attrs = {"retry_of": trial.number, **({"seeded": seeded} if seeded else {})}
        clean.system_attrs = {k: copy.copy(v) for k, v in trial.system_attrs.items()
                              if k in ("failed_trial", "retry_history")}  # fmt: skip
        super().__call__(study, clean)


with warnings.catch_warnings():  # "experimental" since Optuna 2.8, and stable in fact
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    _RETRY = _Retry(max_retry=None)  # a trial whose every worker dies is retried each time, as before


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Fail the trials of dead workers and queue their params again; returns their numbers.

    Two processes resuming at once may both see the same dead trial: only the one whose FAIL
    write lands re-queues it (the other gets Optuna's finished-trial error), so none is doubled.
    """
    storage = study._storage  # the same storage Optuna's own fail_stale_trials() writes through
    done = []
    for t in interrupted_trials(study):
        try:
            storage.set_trial_user_attr(t._trial_id, "error", "its worker stopped (killed or crashed); queued again")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue
        _RETRY(study, t)
        done.append(t.number)
    return done


def fail_and_requeue(study: optuna.Study, trial: optuna.Trial) -> None:
    """A trial stopped by Ctrl-C: failed, and its params queued again, so that ``--resume`` runs
    it first (as a killed one's are); a seeded one (the teacher) is not lost."""
    trial.set_user_attr("error", "interrupted (Ctrl-C); queued again")
    study.tell(trial, state=TrialState.FAIL)
    _RETRY(study, study._storage.get_trial(trial._trial_id))


def requeue_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's callback for a trial it failed for a missing heartbeat: queue its params again."""
    _RETRY(study, trial)


def fail_stale(study: optuna.Study) -> None:
    """Fail and re-queue the trials whose worker stopped its heartbeat (any host)."""
    optuna.storages.fail_stale_trials(study)


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record ``trial``'s heartbeat every ``HEARTBEAT_S`` seconds while the block runs (no-op
    on a storage without heartbeats)."""
    storage = study._storage
    interval = storage.get_heartbeat_interval() if hasattr(storage, "record_heartbeat") else None
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is retried; the trial goes on
                storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="autocompress-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def describe(spec: str) -> dict[str, Any]:
    kind = "journal" if spec.startswith("journal:") else spec.split(":", 1)[0].split("+", 1)[0]
    return {"url": redact(spec), "kind": kind}
