"""The run directory and its study: create or resume, open the storage, seed the first trials."""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd

from autocompress import __version__
from autocompress._io import ensure_writable_dir, storage_error
from autocompress.exceptions import AutoCompressError, RunDirError
from autocompress.results import CONFIG_FILE, STUDY_FILE, STUDY_NAME, read_config
from autocompress.search.config import DIRECTIONS, METRICS, SearchConfig, make_sampler
from autocompress.search.storage import (
    fail_stale,
    live_foreign_trials,
    open_storage,
    redact,
    requeue_interrupted,
    study_exists,
)

if TYPE_CHECKING:
    from autocompress.problems import Problem

# What must match for --resume to continue a study rather than mix two different searches.
RESUME_KEYS = ("target", "budget_ms", "space_fingerprint", "seed", "budget_on")
RESUME_DEFAULTS = {"budget_on": "point"}  # what a run written before the key existed did


def prepare_run_dir(cfg: SearchConfig, target: str, space_fp: str | None, *, create: bool = True) -> Path:
    """The run directory: a new one, or the one ``--resume`` continues (checked to match).

    ``create=False`` only checks, writing nothing (``space_fp`` None: the space is not compared
    yet): the search calls it before loading data and re-calibrating latency, so a mistyped
    ``--resume`` or an existing ``--run-dir`` is refused in a second, not after them.
    """
    if cfg.resume:
        run_dir = cfg.run_dir or _latest_run(cfg.runs_root)
        if not (run_dir / STUDY_FILE).is_file() and not (run_dir / CONFIG_FILE).is_file():
            if cfg.storage is None:
                raise RunDirError(f"cannot resume: {run_dir} holds no study ({STUDY_FILE} is missing)")
            # a worker joining a shared study from a fresh run directory
        old = read_config(run_dir) if (run_dir / CONFIG_FILE).is_file() else {}
        if old:
            _check_version(run_dir, old)
            if cfg.storage is None and not (run_dir / STUDY_FILE).is_file():
                _check_not_a_copy(run_dir, old)
        now = {"target": target, "budget_ms": cfg.budget_ms, "space_fingerprint": space_fp, "seed": cfg.seed,
               "budget_on": cfg.budget_on}  # fmt: skip
        old = {**RESUME_DEFAULTS, **old} if old else old
        for key in RESUME_KEYS:
            if key in old and old[key] != now[key] and (space_fp is not None or key != "space_fingerprint"):
                raise RunDirError(
                    f"cannot resume {run_dir}: it was started with {key}={old[key]!r}, "
                    f"not {now[key]!r}; pass the same settings or start a new run"
                )
        if create:
            _remove_stale_temp_files(run_dir)
        sqlite = run_dir / STUDY_FILE  # the default storage; a shared one lives elsewhere
        with open(sqlite, "rb") if sqlite.is_file() else contextlib.nullcontext(None) as fh:
            if fh is not None and fh.read(16) != b"SQLite format 3\x00":
                raise RunDirError(f"cannot resume {run_dir}: {STUDY_FILE} is not an SQLite database "
                                  "(truncated or overwritten)")  # fmt: skip
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = cfg.run_dir or cfg.runs_root / f"{target}-{cfg.budget_ms:g}ms-{stamp}"
        # config.yaml is written when the study begins: a run killed before that (during the
        # supernet training) may be started again with the same command
        if (run_dir / CONFIG_FILE).exists():
            raise RunDirError(
                f"{run_dir} already holds a search; pass --resume to continue it, or another --run-dir"
            )
    if not create and not run_dir.is_dir():
        ensure_writable_dir(run_dir, "run directory")  # its nearest existing parent; creates nothing
        return run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"cannot write to run directory {run_dir}: {exc.strerror or exc}") from None
    return run_dir


def _check_not_a_copy(run_dir: Path, old: dict[str, Any]) -> None:
    """--resume of a run directory copied without its study.db: its config (a copy of the
    original's) records the original's SQLite file, and the new trials would silently go into
    that other run's study."""
    url = (old.get("storage") or {}).get("url")
    if not isinstance(url, str) or not url.startswith("sqlite:///"):
        return
    study = Path(url.removeprefix("sqlite:///"))
    other = study.parent
    if study.name != STUDY_FILE or other.resolve() == run_dir.resolve() or not (other / CONFIG_FILE).is_file():
        return
    try:
        theirs = read_config(other)
    except RunDirError:
        return
    if theirs.get("created") == old.get("created") and (theirs.get("storage") or {}).get("url") == url:
        raise RunDirError(f"cannot resume {run_dir}: its {STUDY_FILE} is missing and its config.yaml is a copy of "
                          f"{other}'s, whose study it names (the new trials would go into that run); copy "
                          f"{STUDY_FILE} along, or pass --storage {url} to add them to that run's study")  # fmt: skip


def with_recorded_data(cfg: SearchConfig, run_dir: Path) -> SearchConfig:
    """``cfg`` for ``--resume`` of ``run_dir``: the data set, ``--subset``, ``--max-size``,
    ``--sampler`` and ``--fidelity``/``--eta`` the run was started with where the command leaves
    them out (the new trials are scored on the same splits, and held to the same hard limits, as
    the old ones); a data set, subset or size limit other than the run's is refused."""
    if not (run_dir / CONFIG_FILE).is_file():
        return cfg
    config = read_config(run_dir)
    ds = config.get("dataset") or {}
    given = {"dataset": cfg.dataset, "subset": cfg.subset, "max_size_bytes": cfg.max_size_bytes}
    recorded = {"dataset": ds.get("spec"), "subset": ds.get("subset"), "max_size_bytes": config.get("max_size_bytes")}
    known = {"dataset": recorded["dataset"] is not None, "subset": "subset" in ds,  # runs that recorded them
             "max_size_bytes": "max_size_bytes" in config}  # fmt: skip
    for key, flag in (("dataset", "--dataset"), ("subset", "--subset"), ("max_size_bytes", "--max-size")):
        if given[key] is not None and known[key] and given[key] != recorded[key]:
            unit = "B" if key == "max_size_bytes" else ""
            was = f"{flag} {recorded[key]}{unit}" if recorded[key] is not None else f"no {flag}"
            raise RunDirError(f"cannot resume {run_dir}: it was started with {was}, not {flag} {given[key]}{unit}; "
                              "leave it out to continue with the run's own, or start a new run")  # fmt: skip
    pick = {k: given[k] if given[k] is not None else recorded[k] for k in ("subset", "max_size_bytes")}
    # the sampler and the fidelity the run was started with, where the command leaves them out (a
    # typed resume once switched a random or halving run to tpe and full fidelity without a word)
    fid = config.get("fidelity") or {}
    if "sampler" in cfg.defaulted and config.get("sampler"):
        pick["sampler"] = str(config["sampler"])
    if "fidelity" in cfg.defaulted and fid.get("mode"):
        pick["fidelity"] = str(fid["mode"])
    if "eta" in cfg.defaulted and fid.get("eta"):
        pick["eta"] = int(fid["eta"])
    if "fidelity" in cfg.defaulted and "eta" not in cfg.defaulted and pick.get("fidelity", cfg.fidelity) != "halving":
        raise RunDirError("--eta sets the halving rate of --fidelity halving; this resume runs --fidelity full: "
                          "pass --fidelity halving too, or leave --eta out")  # fmt: skip
    return replace(cfg, dataset=given["dataset"] or recorded["dataset"], **pick)


def open_study_storage(cfg: SearchConfig, run_dir: Path, storage_spec: str) -> Any:
    """The opened storage; checks that it holds a study exactly when ``--resume`` says so."""
    try:
        storage = open_storage(storage_spec)
        exists = study_exists(storage, STUDY_NAME)
    except AutoCompressError:
        if not cfg.resume:
            discard_if_empty(run_dir)
        raise
    except Exception as exc:  # SQLAlchemy's or Optuna's: not a storage we can open
        if not cfg.resume:
            discard_if_empty(run_dir)
        why = storage_error(exc) or " ".join(str(exc).split())[:200]
        raise RunDirError(f"cannot open the study in {redact(storage_spec)}: {why}") from exc
    if cfg.resume and (run_dir / CONFIG_FILE).is_file() and not exists:
        raise RunDirError(f"cannot resume: {redact(storage_spec)} holds no autocompress study")
    # (--resume of a run killed before its study began, or a worker that is first to a shared
    # storage, simply starts the study)
    if not cfg.resume and exists:
        raise RunDirError(
            f"{redact(storage_spec)} already holds an autocompress study; pass --resume to join it"
        )
    return storage


def create_study(storage: Any, storage_spec: str, cfg: SearchConfig, problem: Problem,
                 warm: list[tuple[dict[str, Any], dict[str, Any]]]) -> optuna.Study:  # fmt: skip
    """Create or load the study, seed its sampler, and enqueue the first candidates."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=storage,
            directions=list(DIRECTIONS),
            load_if_exists=True,
        )
    except Exception as exc:  # SQLAlchemy's or Optuna's: the storage holds no study we can open
        why = storage_error(exc) or " ".join(str(exc).split())[:200]
        raise RunDirError(f"cannot open the study in {redact(storage_spec)}: {why}") from exc
    study.set_metric_names(list(METRICS))
    # Reseed on resume so a seeded sampler does not replay the trials it already proposed; a
    # worker joining a study others are running also mixes in its pid (same seed, same moment
    # would otherwise mean the same proposals).
    salt = os.getpid() if live_foreign_trials(study) else 0
    study.sampler = make_sampler(cfg.sampler, cfg.seed + len(study.trials) + salt)
    if cfg.resume:
        requeue_interrupted(study)
        fail_stale(study)
    if not study.trials:
        # Warm-start candidates (an earlier run's Pareto set) first, then the two ends of the
        # space: the largest (the teacher, the accuracy reference every Pareto point is compared
        # with) and the smallest network.
        for params, attrs in warm:
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
        sampled = {k for k, v in problem.dimensions().items() if len(v) > 1}
        for cand, role in ((problem.largest(), "largest"), (problem.smallest(), "smallest")):
            params = {k: v for k, v in cand.to_flat().items() if k in sampled}
            study.enqueue_trial(params, user_attrs={"seeded": role}, skip_if_exists=True)
    return study


def warm_start_params(run: Path, problem: Problem) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], int]:
    """The Pareto candidates of an earlier run that this problem's space can express, as enqueue
    arguments, and how many Pareto rows the run has (the rest lie outside this space)."""
    try:
        front = pd.read_csv(run / "pareto.csv")
    except (OSError, ValueError) as exc:
        raise RunDirError(f"cannot warm-start from {run}: pareto.csv is unreadable ({exc})") from None
    dims = problem.dimensions()
    sampled = {k for k, v in dims.items() if len(v) > 1}
    out = []
    for _, row in front.iterrows():
        try:
            cand = problem.row_candidate(row)
        except (AutoCompressError, ValueError, TypeError):
            continue
        if not problem.contains(cand):
            continue
        params = {k: v for k, v in cand.to_flat().items() if k in sampled}
        out.append((params, {"warm_start": f"{run.name}#{int(row['number'])}"}))
    return out, len(front)


def discard_if_empty(run_dir: Path) -> None:
    """A run directory this command just made, holding no file yet: remove it again."""
    if run_dir.is_dir() and not any(p.is_file() for p in run_dir.rglob("*")):
        shutil.rmtree(run_dir, ignore_errors=True)


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Temporary files a killed run left (the real files beside them are whole: see _io)."""
    for pattern in (".*.tmp", "models/.*.tmp", "models/.trial_*.fp32.onnx"):
        for path in run_dir.glob(pattern):
            with contextlib.suppress(OSError):
                path.unlink()
    for folder in run_dir.glob("models/.trial_*"):  # an evaluation's scratch folder
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _check_version(run_dir: Path, old: dict[str, Any]) -> None:
    """A run written by another major.minor version may mean something else: refuse to mix."""
    theirs = str(old.get("autocompress_version", ""))
    if not theirs:
        raise RunDirError(f"cannot resume {run_dir}: its config.yaml was not written by autocompress "
                          "(no autocompress_version)")  # fmt: skip
    if theirs.split(".")[:2] != __version__.split(".")[:2]:
        raise RunDirError(
            f"cannot resume {run_dir}: it was written by autocompress {theirs}, this is {__version__}; "
            f"start a new run (or resume it with autocompress {theirs})"
        )


def _latest_run(root: Path) -> Path:
    runs = [p for p in root.glob("*") if (p / CONFIG_FILE).is_file()] if root.is_dir() else []
    if not runs:
        raise RunDirError(f"nothing to resume: no run in {root}; pass --run-dir")
    return max(runs, key=lambda p: (p / CONFIG_FILE).stat().st_mtime)
