"""The ``autocompress`` command: one verb per stage a user touches.

Library code raises ``AutoCompressError``; this module alone turns it into one line on stderr
and an exit code (2 for bad input). ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional, TypeGuard

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

try:  # Typer >= 0.26 vendors Click and raises the vendored exceptions (click.ClickException never matches)
    from typer._click import exceptions as click_exceptions
except ImportError:  # older Typer raises those of the click package it depends on
    from click import exceptions as click_exceptions

from autocompress import __version__
from autocompress._io import check_not_special, check_regular_file, ensure_writable_dir, path_kind
from autocompress.exceptions import AutoCompressError, BadInputError, ModelError, RunDirError, SpaceError
from autocompress.units import format_bytes, format_ms, parse_budget, parse_size

app = typer.Typer(
    name="autocompress",
    help="Hardware-aware search over architecture and compression for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Check or download data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Logs and pipes get wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 160)
_state = {"debug": False}


def _fail(exc: BaseException, code: int = 2) -> None:
    """One line on stderr and ``code``; under ``--debug`` the full traceback first, same code."""
    if _state["debug"]:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    err.print(f"[bold red]error:[/] {_one_line(exc)}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    """The message on a single line (a message quoting a file's text may hold newlines)."""
    from rich.markup import escape

    return escape(" ".join(str(exc).split()) or type(exc).__name__)


# what Ctrl-C leaves, and how to go on, per command (the rest: nothing kept, nothing half-written)
INTERRUPTED = {
    "_search": "interrupted; completed trials are kept (continue with the same command and --resume)",
    "_finalize": "interrupted; finished candidates are kept, and the one in training resumes from its last epoch "
                 "(continue: run the same command again)",
}


def _guard(fn: Any) -> Any:
    """Run a command body, turning our errors (and Ctrl-C) into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AutoCompressError as exc:
            _fail(exc, exc.exit_code)
        except KeyboardInterrupt:
            err.print(INTERRUPTED.get(fn.__name__, "interrupted; nothing was left half-written"))
            raise typer.Exit(130) from None

    return wrapper


@contextlib.contextmanager
def _progress(*extra: ProgressColumn) -> Iterator[Progress]:
    """The one progress display of every long command: spinner, description, bar, done/total,
    ``extra`` columns, elapsed time and ETA."""
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        *extra, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=out)  # fmt: skip
    with progress:
        yield progress


def _print_version(value: bool) -> None:
    if value:
        out.print(f"autocompress {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks (for bug reports)."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(message)s")


# --------------------------------------------------------------------------- checks

SEED_MAX = 2**32 - 1  # NumPy's and Optuna's samplers take seeds in [0, 2**32)
MAX_CHANNELS, MAX_CLASSES = 4096, 100_000  # beyond these a network does not fit in memory (a typo)
# The range of every integer flag, per command, checked before anything starts (a test makes
# sure no integer flag is missing): parameter -> (flag, lowest, highest or None[, why]).
INT_RANGES: dict[str, dict[str, tuple[Any, ...]]] = {
    "search": {"subset": ("--subset", 1, None), "trials": ("--trials", 1, None), "seed": ("--seed", 0, SEED_MAX),
               "eta": ("--eta", 2, None), "workers": ("--workers", 1, None), "finalize": ("--finalize", 0, None)},
    "finalize": {"top": ("--top", 1, None)},
    "profile": {"threads": ("--threads", 1, None), "reps": ("--reps", 5, None), "passes": ("--passes", 1, None),
                "networks": ("--networks", 0, None), "channels": ("--channels", 1, MAX_CHANNELS),
                "classes": ("--classes", 2, MAX_CLASSES)},
    "validate-latency": {"n": ("-n", 3, None, "a rank correlation needs them"), "seed": ("--seed", 0, SEED_MAX), "reps": ("--reps", 5, None),
                         "passes": ("--passes", 1, None), "channels": ("--channels", 1, MAX_CHANNELS),
                         "classes": ("--classes", 2, MAX_CLASSES)},
    "estimate-table": {"channels": ("--channels", 1, MAX_CHANNELS), "classes": ("--classes", 2, MAX_CLASSES)},
    "space": {"channels": ("--channels", 1, MAX_CHANNELS), "classes": ("--classes", 2, MAX_CLASSES)},
    "export": {"trial": ("--trial", 0, None)},
    "explore": {"port": ("--port", 1, 65535)},
}  # fmt: skip
RUN_FILES = ("config.yaml", "study.db", "trials.parquet", "pareto.csv")


def _check_ints(command: str, kw: dict[str, Any]) -> None:
    """Every integer flag of ``command`` within its range (``INT_RANGES``), or one line naming it."""
    for name, (flag, low, high, *why) in INT_RANGES[command].items():
        value = kw.get(name)
        if value is None or (low <= value and (high is None or value <= high)):
            continue
        rule = f"at least {low}" if high is None else f"between {low} and {high}"
        raise BadInputError(f"{flag} must be {rule}{f' ({why[0]})' if why else ''}; got {value}")


def _check_run_dir(run_dir: Path | None, what: str = "run directory") -> None:
    """A run directory, if it exists, is a folder whose run files are regular files (never a
    FIFO, which would block the reader); a missing one is the library's to report."""
    if run_dir is None:
        return
    kind = path_kind(run_dir)
    if kind is not None and kind != "a folder":
        raise RunDirError(f"{what} {run_dir} is {kind}, not a folder")
    for name in RUN_FILES if kind else ():
        check_not_special(run_dir / name, f"{what} {run_dir}: file", RunDirError)


# --------------------------------------------------------------------------- search


@app.command()
def search(
    target: str = typer.Option(..., "--target", "-t", help="Device name or alias (see 'autocompress targets')."),
    budget: str = typer.Option(..., "--budget", "-b", help="Latency budget, e.g. 10ms, 0.5ms, 800us, 1s."),
    space: Optional[str] = typer.Option(None, "--space", help="Search-space YAML, or a shipped name: fashion_mnist (default), tiny, mobilenet_rgb."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="fashion-mnist, digits or imagefolder:PATH (default: the space's)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder holding Fashion-MNIST's idx files."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Cap every data split at N samples (quick runs)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (default: runs/<target>-<budget>-<time>)."),
    trials: int = typer.Option(30, "--trials", "-n", help="Completed trials to reach."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting new trials after this many seconds."),
    seed: int = typer.Option(0, "--seed", help="Seeds the data splits, the supernet, the fine-tunes and the "
                             "sampler (a --resume must give the run's)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="tpe (default), nsga2, gp or random (all seeded "
                                          "by --seed; on --resume, the run's own)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir (default: the latest run)."),
    max_size: Optional[str] = typer.Option(None, "--max-size", help="Extra hard limit on model size, e.g. 500KB."),
    retrain: bool = typer.Option(False, "--retrain-supernet", help="Ignore the cached supernet."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Study storage: postgresql://…, sqlite:///PATH or "
                                          "journal:PATH (default: study.db in the run dir; on --resume, the run's own)."),
    fidelity: Optional[str] = typer.Option(None, "--fidelity", help="full (default): every candidate fine-tuned for its "
                                           "chosen steps; halving: successive halving over fine-tune steps (short first, "
                                           "full for the best 1/eta); on --resume, the run's own."),
    eta: Optional[int] = typer.Option(None, "--eta", help="Halving rate for --fidelity halving (default 3; on --resume, "
                                      "the run's own)."),
    warm_start: Optional[Path] = typer.Option(None, "--warm-start", help="Enqueue this earlier run's Pareto candidates first."),
    backend: str = typer.Option("local", "--backend", help="local (this process) or ray (Ray Tune trials)."),
    workers: int = typer.Option(1, "--workers", help="Concurrent Ray Tune trials (--backend ray)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join (default: start a local one)."),
    accuracy_window: Optional[float] = typer.Option(None, "--accuracy-window", metavar="PP",
                                                    help="List Pareto points more than PP percentage points of "
                                                    "validation accuracy below the best apart (default 5; on "
                                                    "--resume, the run's)."),
    model: Optional[str] = typer.Option(None, "--model", help="Bring your own model: FILE.py:FUNCTION or "
                                        "package.module:FUNCTION returning an nn.Module (--space then narrows "
                                        "its derived space)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="With --model: its state dict "
                                           "(torch.save(model.state_dict(), path); loaded with weights_only=True)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="With --model: C,H,W "
                                              "(default: the data set's)."),
    device: str = typer.Option("auto", "--device", help="Where training runs (supernet, fine-tunes, QAT, "
                               "BN re-estimation): auto (a CUDA GPU when torch sees one), cpu or cuda. "
                               "Export and accuracy stay on the CPU, by the target's runtime."),
    budget_on: str = typer.Option("point", "--budget-on", help="point: the budget bounds the predicted latency; "
                                  "upper: it bounds the upper end of the prediction's interval (the table's "
                                  "held-out error band; refused where the table records none)."),
    finalize: Optional[int] = typer.Option(None, "--finalize", metavar="K",
                                           help="After the search, give K candidates spread along the front, and "
                                           "the teacher, a long distillation fine-tune (schedule: the space's "
                                           "finalize section; default K: its top, 3 for the shipped spaces); "
                                           "0: off."),
    recalibrate: bool = typer.Option(True, "--recalibrate/--no-recalibrate", help="A table measured on another "
                                     "machine: fit it to this one before the first trial (reference networks timed "
                                     "here, <= 30 s, cached per host)."),
) -> None:
    """Search architecture + compression for the most accurate models within a latency budget,
    or (with --model/--weights) the compression of your own trained network."""
    _search(**locals())


@_guard
def _search(**kw: Any) -> None:
    budget_ms = parse_budget(kw["budget"])
    _check_search_input(kw)  # a typo costs a second, not the import of torch and a training
    from autocompress.hardware.targets import get_target
    from autocompress.search.config import Hooks, SearchConfig, check_options
    from autocompress.search.study import prepare_run_dir

    cfg = SearchConfig(
        target=kw["target"],
        budget_ms=budget_ms,
        space=kw["space"],
        dataset=kw["dataset"],
        data_dir=kw["data_dir"],
        subset=kw["subset"],
        trials=kw["trials"],
        timeout_s=kw["timeout"],
        seed=kw["seed"],
        sampler=kw["sampler"] or "tpe",
        run_dir=kw["run_dir"],
        resume=kw["resume"],
        max_size_bytes=parse_size(kw["max_size"]) if kw["max_size"] else None,
        retrain_supernet=kw["retrain"],
        storage=kw["storage"],
        fidelity=kw["fidelity"] or "full",
        eta=3 if kw["eta"] is None else kw["eta"],
        defaulted=frozenset(k for k in ("sampler", "fidelity", "eta") if kw[k] is None),
        warm_start=kw["warm_start"],
        backend=kw["backend"],
        workers=kw["workers"],
        address=kw["address"],
        model=kw["model"],
        weights=kw["weights"],
        input_shape=kw["input_shape"],
        accuracy_window_pp=kw["accuracy_window"],
        device=kw["device"],
        budget_on=kw["budget_on"],
        finalize=kw["finalize"],
        recalibrate=kw["recalibrate"],
    )
    check_options(cfg)  # run_search checks again; here, before torch is imported
    prepare_run_dir(cfg, get_target(cfg.target).name, None, create=False)
    # the data too: a wrong --data-dir or a broken image costs a second, not the import of torch;
    # the arrays read are kept for the search's own load_dataset (nothing is read twice)
    from autocompress.data_files import DEFAULT_DATASET, read_data
    from autocompress.space import load_space

    read_data(cfg.dataset or (DEFAULT_DATASET if cfg.model else load_space(cfg.space).model.dataset),
              cfg.data_dir, keep=True)  # fmt: skip
    from autocompress.search import run_search

    tasks: dict[str, Any] = {}
    progress: Progress  # set below, before run_search calls the hooks

    def supernet_step(step: int, total: int, loss: float) -> None:
        if "supernet" not in tasks:
            tasks["supernet"] = progress.add_task("training supernet", total=total, info="")
        progress.update(tasks["supernet"], completed=step, info=f"loss {loss:.3f}")
        if not out.is_terminal and (step == total or step % max(1, total // 10) == 0):
            # logs and CI get a line every 10% instead of a live bar
            task = progress.tasks[tasks["supernet"]]
            eta = f", ETA {task.time_remaining:.0f} s" if task.time_remaining else ""
            out.print(f"training supernet: step {step}/{total}, loss {loss:.3f}{eta}", highlight=False)

    def layers_profile(done: int, total: int) -> None:
        if "layers" not in tasks:
            tasks["layers"] = progress.add_task("profiling missing layers on this machine", total=total, info="")
        progress.update(tasks["layers"], completed=done, total=total)

    def host_fit(done: int, total: int) -> None:
        if "host" not in tasks:
            tasks["host"] = progress.add_task("re-calibrating the table to this machine", total=total, info="")
        progress.update(tasks["host"], completed=done, total=total)

    def note(line: str) -> None:
        progress.console.print(line, highlight=False)

    def search_start(done: int, total: int) -> None:
        tasks["trials"] = progress.add_task("trials", total=total, completed=done, info="")

    def trial_done(done: int, number: int, best: float | None, r: dict[str, Any]) -> None:
        from autocompress.results import latency_text

        best_txt = f"best feasible {100 * best:.2f}%" if best is not None else "no feasible yet"
        progress.update(tasks["trials"], completed=done, info=best_txt)
        est = "*" if estimated else ""
        dup = f" (same as trial {r['duplicate_of']})" if r.get("duplicate_of") is not None else ""
        low = " (low fidelity)" if r.get("fidelity") == "low" else ""
        progress.console.print(
            f"trial {number:>3}: val {100 * r['val_accuracy']:.2f}%{low}  {latency_text(r, est)}  "
            f"{format_bytes(r['size_bytes'])}  {_trial_status(r)}  "
            f"[dim]{r['description']}{dup}[/]",
            highlight=False,
        )

    from autocompress.hardware.targets import get_target

    estimated = get_target(cfg.target).estimated
    hooks = Hooks(supernet_step=supernet_step, trial_done=trial_done, search_start=search_start,
                  layers_profile=layers_profile, host_fit=host_fit, note=note)
    with _progress(TextColumn("{task.fields[info]}")) as progress:
        hooks.finalize = _finalize_hooks(progress, estimated)
        outcome = run_search(cfg, hooks)
    if outcome.config.get("kind") == "model":
        _print_model_outcome(outcome)
    else:
        _print_outcome(outcome, cfg.finalize)


def _trial_status(r: dict[str, Any]) -> str:
    """A finished trial's hard limits in its progress line: ``ok``, else each one it breaks."""
    if r["feasible"]:
        return "ok"
    names = {"latency": "OVER BUDGET", "size": "OVER MAX SIZE"}
    return ", ".join(names.get(k, f"OVER {k.upper()}") for k in r.get("over") or ["latency"])


def _finalize_hooks(progress: Progress, estimated: bool) -> Any:
    """Progress of the finalize phase: a bar over the candidates, a bar over the current one's
    training steps (both with ETA), a line per finished candidate (search-time -> finalized)."""
    from autocompress.search.finalize import FinalizeHooks

    tasks: dict[str, Any] = {}

    def start(plan: list[tuple[int, str]], done: int) -> None:
        tasks["all"] = progress.add_task("finalize", total=len(plan), completed=done, info="")
        if done:
            progress.console.print(f"finalize: {done} of {len(plan)} already finished, skipped", highlight=False)
        if all(role == "teacher" for _, role in plan):
            progress.console.print("finalize: no feasible candidate on the accuracy-latency front: only the teacher "
                                   "is trained longer (pick trials with --trials N,...)", highlight=False)  # fmt: skip

    def candidate(number: int, role: str) -> None:
        what = f"  training trial {number} ({role})"
        if "steps" in tasks:  # one bar, reset for each candidate (its ETA is the candidate's)
            progress.reset(tasks["steps"], total=None, description=what)
        else:
            tasks["steps"] = progress.add_task(what, total=None, info="")

    def step(number: int, done: int, total: int) -> None:
        progress.update(tasks["steps"], completed=done, total=total)
        if not out.is_terminal and (done == total or done % max(1, total // 5) == 0):
            task = next(t for t in progress.tasks if t.id == tasks["steps"])
            eta = f", ETA {task.time_remaining:.0f} s" if task.time_remaining else ""
            out.print(f"finalize trial {number}: step {done}/{total}{eta}", highlight=False)

    def finished(st: dict[str, Any]) -> None:
        progress.advance(tasks["all"])
        r, s = st["result"], st["search"]
        resumed = f", resumed at epoch {st['resumed_from_epoch']}" if st.get("resumed_from_epoch") else ""
        verdict = "deployed" if st["state"] == "finalized" else "not better on val: search's model kept"
        progress.console.print(
            f"finalized trial {st['number']:>3} ({st['role']}): val {100 * s['val_accuracy']:.2f}% -> "
            f"{100 * r['val_accuracy']:.2f}%, test {100 * s['test_accuracy']:.2f}% -> {100 * r['test_accuracy']:.2f}% "
            f"({verdict}; {st['seconds']:.0f} s{resumed})", highlight=False)  # fmt: skip

    return FinalizeHooks(start=start, candidate=candidate, step=step, done=finished)


def _print_model_outcome(outcome: Any) -> None:
    """The Pareto set of a model search, against the user's original model."""
    from autocompress.results import interval_line, latency_text

    cfg = outcome.config
    base = cfg["baseline"]
    est = cfg.get("target_estimated")
    out.print(
        f"original {cfg['model']['spec']}: val {100 * base['val_accuracy']:.2f}%, test {100 * base['test_accuracy']:.2f}%, "
        f"{format_ms(base['latency_ms'])}{' (est.)' if est else ''}, {format_bytes(base['size_bytes'])}",
        highlight=False,
    )
    columns = ("trial", "val acc", "Δ test acc", "latency" + (" (est.)" if est else ""), "× faster", "size",
               "× smaller", "candidate")  # fmt: skip

    def row(r: Any) -> list[str]:
        return [
            str(r["number"]), f"{100 * r['val_accuracy']:.2f}%",
            f"{100 * (r['test_accuracy'] - base['test_accuracy']):+.2f} pt", latency_text(r),
            f"{base['latency_ms'] / r['latency_ms']:.2f}", format_bytes(r["size_bytes"]),
            f"{base['size_bytes'] / r['size_bytes']:.2f}", str(r.get("candidate", "")),
        ]  # fmt: skip

    _print_pareto(outcome, columns, row)
    out.print(f"latency source: {cfg['target_label']}", highlight=False)
    out.print(interval_line(cfg), highlight=False, soft_wrap=True)
    if cfg.get("latency_family_note"):
        out.print(cfg["latency_family_note"], highlight=False, soft_wrap=True)
    _print_budget_note(cfg)
    out.print(f"results: {outcome.run_dir}/ (report.md, pareto.csv, pareto.png, trials.parquet, models/)")


def _print_pareto(outcome: Any, columns: tuple[str, ...], row: Any) -> None:
    """The accuracy–latency front first, then the other Pareto points (smaller, not faster), then
    one line for those far below the best accuracy (``row`` makes a table row of a trial)."""
    from autocompress.results import accuracy_window, far_below_line, pareto_groups

    cfg = outcome.config
    window = accuracy_window(cfg)
    front, others, _ = pareto_groups(outcome.pareto, window)
    tables = [(f"Accuracy–latency front on {cfg['target']} within {format_ms(cfg['budget_ms'])}", front,
               "no other candidate within the budget is as accurate and faster")]  # fmt: skip
    if not others.empty:
        tables.append(("Also on the Pareto set: smaller, not faster", others, None))
    for title, rows, caption in tables:
        table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
        for col in columns:
            table.add_column(col, justify="left" if col == "candidate" else "right")
        for _, r in rows.iterrows():
            table.add_row(*row(r))
        out.print(table)
    line = far_below_line(outcome.pareto, window)
    if line:
        out.print(f"{line}; --accuracy-window PP widens the window", highlight=False)


def _print_budget_note(cfg: dict[str, Any]) -> None:
    """One line when the budget excluded no candidate of the space, or every one (config.yaml's
    latency_range)."""
    from rich.markup import escape

    from autocompress.budget import budget_message

    msg = budget_message(float(cfg["budget_ms"]), cfg.get("latency_range"), str(cfg["target"]),
                         budget_on=cfg.get("budget_on", "point"), band=cfg.get("latency_error_band"))  # fmt: skip
    if msg:
        out.print(f"[bold yellow]note:[/] {escape(msg)}", highlight=False, soft_wrap=True)


def _check_search_input(kw: dict[str, Any]) -> None:
    """The cheap checks of a search's input (run_search repeats most of them), before anything
    is created: integer ranges, size, storage, paths, target, space."""
    from autocompress.hardware.targets import check_precisions, get_target
    from autocompress.search.storage import check_storage_spec
    from autocompress.space import load_space

    _check_ints("search", kw)
    fidelity = kw.get("fidelity") or "full"
    if kw.get("eta") is not None and fidelity != "halving" and not (kw.get("resume") and kw.get("fidelity") is None):
        raise BadInputError(f"--eta sets the halving rate of --fidelity halving; this search runs --fidelity "
                            f"{fidelity}: pass --fidelity halving too, or leave --eta out")  # it would be ignored
    if kw.get("budget_on", "point") not in ("point", "upper"):
        raise BadInputError(f"--budget-on must be point or upper; got {kw['budget_on']!r}")
    if kw.get("max_size"):
        parse_size(kw["max_size"])
    check_storage_spec(kw.get("storage"))  # a typo must not leave an empty run directory
    _check_run_dir(kw.get("run_dir"))
    warm = kw.get("warm_start")
    if warm is not None and path_kind(warm) not in (None, "a folder"):
        raise RunDirError(f"cannot warm-start from {warm}: it is {path_kind(warm)}, not a run directory")
    if warm is not None:
        check_not_special(warm / "pareto.csv", f"cannot warm-start from {warm}:", RunDirError)
    if kw.get("weights") is not None:
        check_regular_file(Path(kw["weights"]).expanduser(), "--weights: file", ModelError)
    table = get_target(kw["target"]).table  # loads and validates the table
    if not kw.get("model"):  # with --model, --space narrows the model's derived space (checked later)
        check_precisions(load_space(kw.get("space")), table.device)
    elif kw.get("space") is not None:
        kind = path_kind(Path(kw["space"]).expanduser())
        if kind not in (None, "a file"):
            raise SpaceError(f"search space {kw['space']} is {kind}, not a YAML file")
    if kw.get("model"):
        from autocompress.model_spec import check_model_spec

        check_model_spec(kw["model"], kw.get("input_shape"))


def _print_outcome(outcome: Any, finalize: Optional[int] = None) -> None:
    from autocompress.results import interval_line, latency_text

    cfg = outcome.config
    sn = cfg["supernet"]
    dev = cfg.get("device") or {}
    on = f" on {dev.get('gpu') or dev['resolved']}" if dev.get("resolved") else ""
    how = "reused from cache" if sn.get("cached") else f"trained in {sn['train_seconds']:.0f} s{on}"
    out.print(
        f"supernet: {how}; largest subnet test accuracy {100 * sn['largest_test_acc']:.2f}% "
        f"(smallest {100 * sn['smallest_test_acc']:.2f}%)",
        highlight=False,
    )
    est = cfg.get("target_estimated")
    columns = ("trial", "val acc", "test acc", "latency" + (" (est.)" if est else ""),
               "energy" + (" (est.)" if est else ""), "size", "candidate")  # fmt: skip

    def row(r: Any) -> list[str]:
        energy = r.get("energy_mj")
        return [
            str(r["number"]),
            f"{100 * r['val_accuracy']:.2f}%",
            f"{100 * r['test_accuracy']:.2f}%",
            latency_text(r),
            "n/a" if energy is None or energy != energy else f"{energy:.3f} mJ",
            format_bytes(r["size_bytes"]),
            str(r.get("candidate", "")),
        ]

    _print_pareto(outcome, columns, row)
    out.print(f"latency source: {cfg['target_label']}", highlight=False)
    out.print(interval_line(cfg), highlight=False, soft_wrap=True)
    if cfg.get("latency_family_note"):
        out.print(cfg["latency_family_note"], highlight=False, soft_wrap=True)
    _print_budget_note(cfg)
    out.print(f"results: {outcome.run_dir}/ (report.md, pareto.csv, pareto.png, trials.parquet, models/)",
              highlight=False, soft_wrap=True)  # fmt: skip
    _print_next(outcome, finalize)


def _print_next(outcome: Any, finalize: Optional[int]) -> None:
    """The commands to run next, one line each however narrow the terminal (a command wrapped
    into two lines is pasted as two); the resume command repeats what its defaults would change."""
    from autocompress.results import resume_args, storage_arg
    from autocompress.space import space_arg

    cfg = outcome.config
    out.print("next:")
    run_dir = shlex.quote(str(outcome.run_dir))  # the commands below are copied into a shell
    verbs = {c.name or c.callback.__name__ for c in app.registered_commands}  # type: ignore[union-attr]
    if "explore" in verbs:
        out.print(f"  autocompress explore {run_dir}", highlight=False, soft_wrap=True)
    if "export" in verbs:
        fmt = "openvino" if cfg.get("target_runtime") == "openvino" else "onnx"  # the IR for an OpenVINO target
        out.print(f"  autocompress export {run_dir} --best --format {fmt}", highlight=False, soft_wrap=True)
    out.print(f"  less {shlex.quote(str(outcome.run_dir / 'report.md'))}", highlight=False, soft_wrap=True)
    out.print(
        f"  autocompress search --target {cfg['target']} --budget {cfg['budget_ms']:g}ms "
        f"--space {space_arg(cfg['space_path'])} --run-dir {run_dir} --resume --trials {cfg['trials'] + 30}"
        + resume_args(cfg) + (f" --finalize {finalize}" if finalize is not None else "")
        + (storage_arg(cfg, outcome.run_dir) or "   # 30 more trials"),
        highlight=False, soft_wrap=True,
    )  # fmt: skip


# --------------------------------------------------------------------------- finalize


@app.command()
def finalize(
    run_dir: Path = typer.Argument(..., help="A finished run directory (runs/<name>)."),
    trials: Optional[str] = typer.Option(None, "--trials", metavar="N,N,...",
                                         help="Finalize these trial numbers (default: --top K spread along the front)."),
    top: Optional[int] = typer.Option(None, "--top", metavar="K",
                                      help="Candidates spread along the accuracy-latency front (default: the "
                                      "space's finalize.top)."),
) -> None:
    """Give a finished run's best candidates, and its teacher, a long distillation fine-tune, then
    deploy and measure them as the search did (resumable: a rerun continues where it stopped)."""
    _finalize(run_dir=run_dir, trials=trials, top=top)


@_guard
def _finalize(**kw: Any) -> None:
    _check_ints("finalize", kw)
    numbers = _trial_numbers(kw["trials"]) if kw["trials"] is not None else None
    _check_run_dir(kw["run_dir"])
    if path_kind(kw["run_dir"]) is None:
        raise RunDirError(f"run directory {kw['run_dir']} does not exist")
    from autocompress.results import read_config
    from autocompress.search.finalize import finalize_run

    estimated = bool(read_config(kw["run_dir"]).get("target_estimated"))
    with _progress(TextColumn("{task.fields[info]}")) as progress:
        hooks = _finalize_hooks(progress, estimated)
        outcome = finalize_run(kw["run_dir"], top=kw["top"], numbers=numbers, hooks=hooks)
    star = "*" if estimated else ""
    table = Table(title=f"Finalized ({outcome.config['finalize']['schedule_text']})", title_justify="left")
    for col in ("trial", "role", "state", "val: search", "val: final", "test: search", "test: final",
                "latency" + (" (est.)" if estimated else ""), "size"):  # fmt: skip
        table.add_column(col, justify="right")
    rows = outcome.trials.set_index("number")
    for number, role in outcome.plan:
        r = rows.loc[number]
        table.add_row(str(number), role, str(r["final_state"]), f"{100 * r['search_val_accuracy']:.2f}%",
                      f"{100 * r['final_val_accuracy']:.2f}%", f"{100 * r['search_test_accuracy']:.2f}%",
                      f"{100 * r['final_test_accuracy']:.2f}%", f"{format_ms(r['latency_ms'])}{star}",
                      format_bytes(r["size_bytes"]))  # fmt: skip
    out.print(table)
    out.print(f"results rewritten with the deployed models: {outcome.run_dir}/ (report.md, pareto.csv, "
              "trials.parquet, models/final_NNNN.onnx)", highlight=False)  # fmt: skip


def _trial_numbers(text: str) -> list[int]:
    """``--trials 3,7`` as [3, 7]; anything else is one line."""
    try:
        numbers = [int(p) for p in text.replace(" ", "").split(",") if p != ""]
    except ValueError:
        numbers = []
    if not numbers or any(n < 0 for n in numbers):
        raise BadInputError(f"--trials takes trial numbers separated by commas, e.g. 3,7; got {text!r}")
    return numbers


# --------------------------------------------------------------------------- targets / profile


@app.command()
def latency(
    model: Path = typer.Argument(..., help="An ONNX file of a CNN (ours or any other)."),
    target: str = typer.Option(..., "--target", "-t", help="Device name or alias (see 'autocompress targets')."),
    precision: str = typer.Option("mixed", "--precision", "-p", help="fp32, fp16 or int8: every layer in it; "
                                  "mixed (default): as the file stores it: int8 where it quantizes (QDQ "
                                  "QuantizeLinear/DequantizeLinear), fp16 where it computes in float16, fp32 elsewhere."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON instead of a table."),
    profile_missing: bool = typer.Option(False, "--profile-missing", help="On a measured table timed on this "
                                         "machine: profile the layers whose kind has no row here and add them to "
                                         "its layers.csv (without it, such a file is refused)."),
) -> None:
    """How fast is this ONNX file on that device: predicted latency with its interval (from the
    table's held-out errors), energy, the per-layer breakdown and where each number came from."""
    _latency(model, target, precision, as_json, profile_missing)


@_guard
def _latency(model: Path, target: str, precision: str, as_json: bool, profile_missing: bool) -> None:
    import json

    from autocompress.hardware.targets import check_file_precision, get_target

    check_file_precision(precision)  # before the ONNX file is read
    check_regular_file(model, "model file", BadInputError)
    check_file_precision(precision, get_target(target))  # all before torch and the pricing path load
    from autocompress.hardware.file_latency import file_latency
    progress: Progress | None = None
    task: Any = None

    def on_profile(done: int, total: int) -> None:
        nonlocal progress, task
        if progress is None:
            progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=err)  # fmt: skip
            progress.start()
            task = progress.add_task("profiling layers missing from the table, on this machine", total=total)
        progress.update(task, completed=done, total=total)

    pricing_log = logging.getLogger("autocompress.hardware.pricing")
    level = pricing_log.level
    pricing_log.setLevel(logging.ERROR)  # its per-network warning lists what the breakdown marks with *
    try:
        res = file_latency(model, target, precision, profile_missing=profile_missing, on_profile=on_profile)
    finally:
        pricing_log.setLevel(level)
        if progress is not None:
            progress.stop()
    if as_json:
        sys.stdout.write(json.dumps(res.to_dict(), indent=2) + "\n")
        return
    est = " (ESTIMATE)" if res.estimated else ""
    unit = res.unit  # "layer", or "block" for a file of our own search priced as it was
    what = "per-layer (fused kernel) latency" if unit == "layer" else "per-block latency, as the search priced it"
    table = Table(title=f"{model.name} on {res.target}: {what}{est}", title_justify="left",
                  caption=f"priced by: {'table' if unit == 'layer' else 'blocks.csv'} = a row of the target's {unit}s.csv; "
                  "interpolated / estimated = not a row of the table (marked *)", caption_justify="left")  # fmt: skip
    tag = " (est.)" if res.estimated else ""
    for col in ("#", unit, "precision", f"ms{tag}", "share", f"energy mJ{tag}", "priced by"):
        table.add_column(col, justify="left" if col in (unit, "priced by") else "right")
    for line in res.layers:
        star = "*" if line.estimate else ""
        table.add_row(str(line.index), line.label, line.precision, f"{line.latency_ms:.4f}{star}",
                      f"{100 * line.latency_ms / res.latency_ms:.1f}%",
                      "n/a" if line.energy_mj is None else f"{line.energy_mj:.4f}", line.priced_by)  # fmt: skip
    table.add_row("", "runtime overhead (per inference)", "", f"{res.overhead_ms:.4f}",
                  f"{100 * res.overhead_ms / res.latency_ms:.1f}%", "", "device.yaml")  # fmt: skip
    if res.transitions_ms:
        table.add_row("", "entries into a reduced precision", "", f"{res.transitions_ms:.4f}",
                      f"{100 * res.transitions_ms / res.latency_ms:.1f}%", "", "device.yaml")  # fmt: skip
    out.print(table)
    for note in res.notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True)
    precs = ", ".join(f"{n} {p}" for p, n in sorted(res.layer_precisions.items()))
    iv = f" [{format_ms(res.interval_ms[0])} – {format_ms(res.interval_ms[1])}]" if res.interval_ms else ""
    if res.energy_mj is None:
        energy = "energy n/a"
    else:
        eiv = (f" [{res.energy_interval_mj[0]:.3f} – {res.energy_interval_mj[1]:.3f}]"
               if res.energy_interval_mj else "")  # fmt: skip
        energy = f"energy {res.energy_mj:.3f} mJ{eiv}{est} at {res.power_w:g} W"
    marked = f"; {res.estimate_layers} of {len(res.layers)} {unit}s priced by estimate (*)" if res.estimate_layers else ""
    out.print(f"{model.name} on {res.target} ({res.precision}: {precs} {unit}s): {format_ms(res.latency_ms)}{iv}{est}, "
              f"{energy}; interval: {res.interval_note}; source: {res.source}{marked}",
              highlight=False, soft_wrap=True)  # fmt: skip




@app.command()
def targets() -> None:
    """List hardware targets, their aliases, precisions, table size and where the numbers came from."""
    _targets()


@_guard
def _targets() -> None:
    from autocompress.hardware.families import held_out_line
    from autocompress.hardware.targets import list_targets

    table = Table(title="Hardware targets", title_justify="left")
    for col in ("name", "aliases", "runtime", "precisions", "rows", "source", "held-out error (estimated)"):
        table.add_column(col)
    for t in list_targets():
        d = t.device
        table.add_row(d.name, ", ".join(d.aliases), d.runtime, ",".join(d.precisions),
                      str(len(t.table.rows)), t.source_label, held_out_line(d) or "-")  # fmt: skip
    out.print(table)


@app.command("space")
def space_command(
    space: str = typer.Argument(..., help="A shipped space (fashion_mnist, tiny, mobilenet_rgb) or a search-space YAML file."),
    target: str = typer.Option("cpu", "--target", "-t", help="Device name or alias (see 'autocompress "
                               "targets'); default cpu, the table measured on this machine."),
    budget: Optional[str] = typer.Option(None, "--budget", "-b", help="Also say whether this budget binds, e.g. 10ms."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Input channels of the data the space is "
                                           "used with (default: the space's input.channels)."),
    classes: int = typer.Option(10, "--classes", help="Classes of the data the space is used with."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (for scripts) instead of a table."),
) -> None:
    """How many candidates a space holds and its predicted latency range on a target: the
    smallest and largest network per precision, i.e. which budgets bind (table lookups only)."""
    _space(**locals())


@_guard
def _space(**kw: Any) -> None:
    import json

    from autocompress.budget import (
        binding_budget,
        precision_ranges,
        space_latency_range,
        unsupported_precisions,
    )
    from autocompress.hardware.targets import get_target
    from autocompress.space import load_space, space_arg

    _check_ints("space", kw)
    budget_ms = parse_budget(kw["budget"]) if kw["budget"] else None
    from autocompress.hardware.host_fit import apply_cached, measured_here

    raw = get_target(kw["target"])
    t = apply_cached(raw)  # as a search prices with it, where this machine has fitted the table already
    elsewhere = raw.device.source == "measured" and not measured_here(raw.device) and t is raw
    sp = load_space(kw["space"])
    table = t.table
    shape = {"channels": kw["channels"] or sp.model.input.channels, "classes": kw["classes"]}
    rng = space_latency_range(sp, table, **shape, target=t.name, estimated=t.estimated)
    rows = precision_ranges(sp, table, **shape)
    refused = unsupported_precisions(sp, table)
    verdict = _budget_verdict(budget_ms, rng) if budget_ms else None
    uncovered = _uncovered_space_note(t.device, sp, shape["channels"], kw["classes"])
    missing, needed = _missing_rows(t, sp, shape["channels"], kw["classes"])
    if kw["as_json"]:
        doc = {
            "space": sp.name, "path": str(sp.path), "size": sp.size(), "target": t.name, "estimated": t.estimated,
            "latency_source": t.source_label, **shape,
            "precisions": [{"precision": r.precision, "in_space": r.in_space, "smallest_ms": round(r.min_ms, 5),
                            "largest_ms": round(r.max_ms, 5)} for r in rows],
            "range": {"min_ms": round(rng.min_ms, 5), "max_ms": round(rng.max_ms, 5), "fastest": rng.fastest,
                      "slowest": rng.slowest, "binding_example_ms": binding_budget(rng.min_ms, rng.max_ms)},
            "unsupported_precisions": refused, "uncovered_family": uncovered,
            "rows": {"needed": needed, "interpolated": missing},
            **({"budget": {"budget_ms": budget_ms, "binds": rng.binds(budget_ms), "feasible": budget_ms >= rng.min_ms,
                           "message": verdict}} if budget_ms else {}),
        }  # fmt: skip
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    est = " (ESTIMATED)" if t.estimated else ""
    n = sp.size()
    title = f"Space {sp.name}: {n:,} candidate{'s' if n != 1 else ''}; predicted latency on {t.name}{est}"
    tab = Table(title=title, title_justify="left")
    for col, just in [("precision", "left"), ("smallest network" + est, "right"),
                      ("largest network" + est, "right"), ("", "left")]:  # fmt: skip
        tab.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        note = "" if r.in_space else "[dim]not offered by the space (what adding it would give)[/]"
        tab.add_row(f"all {r.precision}", format_ms(r.min_ms), format_ms(r.max_ms), note)
    tab.add_row("[bold]the space (any mix)[/]", f"[bold]{format_ms(rng.min_ms)}[/]", f"[bold]{format_ms(rng.max_ms)}[/]",
                "any pruning ratio and precision per stage")  # fmt: skip
    out.print(tab)
    out.print(f"latency source: {t.source_label}", highlight=False)
    if elsewhere:
        out.print("note: these are the figures of the machine the table was profiled on; a search re-calibrates it to "
                  "this one first (<= 30 s, then cached), and this command then shows those", highlight=False)  # fmt: skip
    if uncovered:
        out.print(f"note: {uncovered}", highlight=False)
    if missing:
        how = ("from the roofline" if t.device.roofline is not None else
               f"from rows of their family; measure them with 'autocompress profile --space {space_arg(sp.path)} --name {t.name} "
               "--merge' on the machine the table was profiled on")  # fmt: skip
        out.print(f"note: {missing} of the {needed} block rows this space needs are not in {t.name}'s table: "
                  f"interpolated {how}", highlight=False)  # fmt: skip
    if format_ms(rng.min_ms) == format_ms(rng.max_ms):  # one candidate, or all priced alike
        out.print(f"{'the candidate' if n == 1 else 'every candidate'}: {rng.fastest}", highlight=False)
        out.print(f"no budget binds: from {format_ms(rng.min_ms)} up {'it fits' if n == 1 else 'all fit'}, below "
                  f"{'it does not' if n == 1 else 'none does'}{est}", highlight=False)  # fmt: skip
    else:
        out.print(f"fastest: {rng.fastest}\nslowest: {rng.slowest}", highlight=False)
        out.print(f"budgets between {format_ms(rng.min_ms)} and {format_ms(rng.max_ms)} bind (e.g. --budget "
                  f"{binding_budget(rng.min_ms, rng.max_ms):g}ms); below "
                  f"{format_ms(rng.min_ms)} no candidate fits; from {format_ms(rng.max_ms)} up none is excluded{est}",
                  highlight=False)  # fmt: skip
    if refused:
        out.print(f"note: the space uses {', '.join(refused)}, which {t.name} does not run: a search there is "
                  "refused", highlight=False)  # fmt: skip
    if verdict:
        out.print(verdict, highlight=False)


def _missing_rows(t: Any, space: Any, channels: int, classes: int) -> tuple[int, int]:
    """(missing, needed): the table rows the space's blocks need at the precisions it offers that
    the target runs, and how many of them the table lacks (priced by interpolation)."""
    from autocompress.arch import all_blocks
    from autocompress.hardware.lut import BlockKey

    offered = {p for k, v in space.dimensions().items() if k.endswith("precision") for p in v} or {"fp32"}
    precisions = [p for p in t.device.precisions if p in offered | {"fp32"}]
    keys = {BlockKey.of(b, p) for b in all_blocks(space, channels, classes)
            for p in (["fp32"] if b.op in ("stem", "head") else precisions)}  # fmt: skip
    return sum(t.table.get(k) is None for k in keys), len(keys)


def _uncovered_space_note(device: Any, space: Any, channels: int, classes: int) -> str | None:
    """``families.uncovered_note`` for the space's largest network on an estimated target."""
    from autocompress.arch import plan
    from autocompress.hardware.families import uncovered_blocks_note

    return uncovered_blocks_note(device, plan(space.largest(), space, channels, classes))


def _budget_verdict(budget_ms: float, rng: Any) -> str:
    """Whether ``budget_ms`` binds on a space predicted ``rng`` (a ``LatencyRange``)."""
    from autocompress.budget import below_fastest_message, non_binding_message

    entry = rng.to_config(budget_ms)
    msg = non_binding_message(budget_ms, entry, rng.target) or below_fastest_message(budget_ms, entry, rng.target,
                                                                                      when="before")  # fmt: skip
    if msg:
        return msg
    est = " (ESTIMATED)" if rng.estimated else ""
    return f"budget {format_ms(budget_ms)} binds on {rng.target}: it excludes the candidates predicted above it{est}"


@app.command()
def profile(
    space: Optional[str] = typer.Option(None, "--space", help="Profile every block this space can produce "
                                        "(a YAML file or a shipped name; default: fashion_mnist)."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="onnxruntime or openvino (this CPU), or tensorrt "
                                "(an NVIDIA GPU with TensorRT's Python package, e.g. on a Jetson)."),
    name: Optional[str] = typer.Option(None, "--name",
                                       help="Target name for the table (default: x86-cpu-<runtime>, "
                                       "nvidia-gpu-tensorrt)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Table folder (default: <name> in the first "
                                           "$AUTOCOMPRESS_TABLES folder, else in the shipped tables)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Comma-separated precisions to measure "
                                            "(default: what the runtime runs: fp32,int8 on a CPU, "
                                            "fp32,fp16,int8 with tensorrt)."),
    threads: int = typer.Option(1, "--threads", help="Inference threads (pinned to as many CPUs; recorded)."),
    reps: int = typer.Option(60, "--reps", help="Timed runs per block and pass (after warm-up)."),
    passes: int = typer.Option(3, "--passes", help="Passes over all blocks, spread over time; the fastest is kept."),
    networks: int = typer.Option(24, "--networks", help="Random whole networks timed to fit block_scale "
                                 "(0: keep the table's current factor)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Input channels of the data the space is "
                                           "used with (default: the space's input.channels)."),
    classes: int = typer.Option(10, "--classes", help="Classes of the data the space is used with."),
    merge: bool = typer.Option(True, "--merge/--replace", help="Keep rows of an existing table that were not re-measured."),
    missing_only: bool = typer.Option(False, "--missing-only", help="Measure only the blocks the table lacks and add "
                                      "their rows; device.yaml (overhead, block_scale, host) stays as measured."),
    pin: bool = typer.Option(False, "--pin/--no-pin", help="Pin the process to the first --threads CPUs "
                             "(steadier on a dedicated board; worse on a shared VM, where other work lands there)."),
    layers: bool = typer.Option(False, "--layers", help="Generic layers of --model (layers.csv) instead of "
                                "the space's blocks; on an estimated --name, rows come from its roofline."),
    model: Optional[str] = typer.Option(None, "--model", help="With --layers: FILE.py:FUNCTION."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="With --layers: the model's state dict."),
    input_shape: str = typer.Option("1,28,28", "--input-shape", help="With --layers: C,H,W."),
) -> None:
    """Measure every fused block of a space (or, with --layers, every layer of a model at each
    pruning ratio) on this machine (ONNX Runtime or OpenVINO); write a table."""
    if layers:
        _profile_layers(**locals())
    else:
        _profile(**{k: v for k, v in locals().items() if k not in ("layers", "model", "weights", "input_shape")})


def _profile_missing(kw: dict[str, Any], precisions: list[str], name: str, folder: Path, sp: Any) -> None:
    from autocompress.hardware.profile_add import profile_missing

    with _progress() as progress:
        task = progress.add_task("profiling missing blocks", total=None)
        table, added = profile_missing(
            sp, folder, precisions=precisions, runtime=kw["runtime"], threads=kw["threads"], reps=kw["reps"],
            passes=kw["passes"], in_channels=kw["channels"] or sp.model.input.channels, num_classes=kw["classes"],
            on_block=lambda d, t: progress.update(task, completed=d, total=t),
        )  # fmt: skip
    out.print(f"added {added} measured rows to {folder}/blocks.csv ({len(table.rows)} rows; device.yaml unchanged)",
              highlight=False)  # fmt: skip


@_guard
def _profile_layers(**kw: Any) -> None:
    from autocompress.hardware.layer_estimate import estimate_layer_rows
    from autocompress.hardware.layer_profile import profile_layer_keys
    from autocompress.hardware.layer_table import load_layers, merge_rows
    from autocompress.hardware.targets import DEFAULT_NAMES, check_writable, get_target, supported_precisions
    from autocompress.model_spec import parse_input_shape
    from autocompress.problems.user_model.layers import model_layer_keys, user_example
    from autocompress.problems.user_model.loader import load_user_model
    from autocompress.problems.user_model.space import derive_space, load_model_space_spec

    _check_ints("profile", kw)
    if not kw["model"] or not kw["weights"]:
        raise BadInputError("--layers needs --model FILE.py:FUNCTION and --weights FILE")
    if kw["runtime"] not in DEFAULT_NAMES:
        raise BadInputError(f"--runtime must be one of {', '.join(DEFAULT_NAMES)}; got {kw['runtime']!r}")
    target = get_target(kw["name"] or DEFAULT_NAMES[kw["runtime"]])
    check_writable(target.folder)  # layers.csv is written there, after minutes of measuring
    runs = [] if target.estimated else supported_precisions(kw["runtime"])  # TensorRT missing: one line, now
    user = load_user_model(kw["model"], kw["weights"], input_shape=parse_input_shape(kw["input_shape"]))
    precisions = [p.strip() for p in kw["precision"].split(",") if p.strip()] if kw["precision"] else runs
    if target.estimated:
        precisions = list(target.device.precisions)
    space = derive_space(user.module, user_example(user), load_model_space_spec(kw["space"]),
                         precisions=precisions, fn_name=f"{user.function}()")  # fmt: skip
    keys = model_layer_keys(user, space, precisions)
    have = load_layers(target.folder, target.device).rows
    todo = keys if not kw["merge"] else [k for k in keys if k not in have]
    if target.estimated:
        rows = estimate_layer_rows(target.device, todo)
    else:
        from autocompress.hardware.host_fit import measured_here

        if not measured_here(target.device):  # rows timed here beside rows timed there: one table, two machines
            host = target.device.host
            raise BadInputError(
                f"target {target.name} was measured on another machine ({host.get('cpu', 'unknown')!r}, "
                f"{host.get('logical_cpus', '?')} logical CPUs, machine {host.get('machine') or 'unrecorded'}): "
                f"layers timed here would mix two machines in one table; run this command on that machine, or "
                f"profile this one with 'autocompress profile --runtime {target.device.runtime} --name "
                f"{target.name}-here' and add the layers to that table (--name {target.name}-here)"
            )
        if target.device.runtime != kw["runtime"] or target.device.host.get("threads") != kw["threads"]:
            raise BadInputError(
                f"target {target.name} was measured with {target.device.runtime}, "
                f"{target.device.host.get('threads')} thread(s); profile its layers the same way"
            )
        with _progress() as progress:
            task = progress.add_task("profiling layers", total=None)
            rows = profile_layer_keys(
                todo, threads=kw["threads"], reps=kw["reps"], passes=kw["passes"], runtime=kw["runtime"],
                on_progress=lambda d, t: progress.update(task, completed=d, total=t),
            ) if todo else []  # fmt: skip
    table = merge_rows(target.folder, target.device, rows)
    out.print(f"{len(rows)} new {'estimated' if target.estimated else 'measured'} layer rows "
              f"({len(keys) - len(todo)} already there); {len(table.rows)} rows in "
              f"{target.folder}/layers.csv", highlight=False)  # fmt: skip


@_guard
def _profile(**kw: Any) -> None:
    _check_ints("profile", kw)  # before the import of torch
    from autocompress.hardware.targets import (
        DEFAULT_NAMES,
        check_profile_precisions,
        check_writable,
        new_table_folder,
        supported_precisions,
    )
    from autocompress.space import load_space

    if kw["runtime"] not in DEFAULT_NAMES:
        raise BadInputError(f"--runtime must be one of {', '.join(DEFAULT_NAMES)}; got {kw['runtime']!r}")
    runs = supported_precisions(kw["runtime"])  # TensorRT without tensorrt or a GPU: one line, now
    precisions = [p.strip() for p in kw["precision"].split(",") if p.strip()] if kw["precision"] else runs
    if not kw["missing_only"]:  # --missing-only also checks them against the table (profile_add)
        check_profile_precisions(kw["runtime"], precisions)
    name = kw["name"] or DEFAULT_NAMES[kw["runtime"]]
    from autocompress.hardware.lut import TARGET_NAME

    if not re.fullmatch(TARGET_NAME, name):  # it names the table's folder: 'a/b' or '../x' would put it elsewhere
        raise BadInputError(f"--name must be a plain name (letters, digits, '.', '_', '+', '-'; it names the table's "
                            f"folder); got {name!r}")  # fmt: skip
    from autocompress.hardware.targets import list_targets

    targets = list_targets()
    owner = next((t for t in targets if name in t.device.aliases and t.name != name), None)
    if owner is not None:  # it would take the alias over from the target users reach by it
        raise BadInputError(f"--name {name} is an alias of target {owner.name}; choose another name")
    folder = kw["out_dir"] or new_table_folder(name)
    shadowed = next((t for t in targets if t.name == name and t.folder.resolve() != Path(folder).resolve()), None)
    sp = load_space(kw["space"])
    check_writable(folder)  # before minutes of measuring, not after; all of the above before torch
    from autocompress.hardware.profile import profile_space

    if kw["missing_only"]:
        _profile_missing(kw, precisions, name, folder, sp)
        return
    with _progress() as progress:
        task = progress.add_task("profiling blocks", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        table = profile_space(
            sp, name=name, precisions=precisions, threads=kw["threads"], reps=kw["reps"], runtime=kw["runtime"],
            in_channels=kw["channels"] or sp.model.input.channels, num_classes=kw["classes"], folder=folder,
            merge=kw["merge"], pin=kw["pin"], passes=kw["passes"], networks=kw["networks"], on_block=tick,
        )  # fmt: skip
    out.print(f"wrote {len(table.rows)} rows to {folder}/ ({table.device.runtime} {table.device.runtime_version}, "
              f"{table.device.host.get('cpu')}, {kw['threads']} thread(s))", highlight=False)  # fmt: skip
    if shadowed is not None:  # searched first: --target NAME now prices with this table alone
        out.print(f"note: --target {name} now reads this table, not {shadowed.folder}/ (its {len(shadowed.table.rows)} "
                  f"rows); it holds the blocks of space {sp.name}: other spaces' blocks are interpolated until "
                  f"profiled here too ('autocompress profile --space SPACE --name {name} --merge')", highlight=False)  # fmt: skip


@app.command("validate-latency")
def validate_latency(
    target: str = typer.Option("cpu", "--target", "-t", help="A table measured on this machine."),
    n: int = typer.Option(100, "-n", help="Random candidates to build, time and predict."),
    space: Optional[str] = typer.Option(None, "--space", help="Search space to draw candidates from (a YAML file "
                                        "or a shipped name; default: fashion_mnist)."),
    precision: str = typer.Option("mixed", "--precision", help="fp32, fp16, int8 (every stage), or mixed (as sampled)."),
    seed: int = typer.Option(0, "--seed"),
    reps: int = typer.Option(50, "--reps", help="Timed runs per candidate and pass (after warm-up)."),
    passes: int = typer.Option(3, "--passes", help="Passes over all candidates, spread over time; the fastest is kept."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Default: the space's input.channels."),
    classes: int = typer.Option(10, "--classes"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for validation.json/.csv/.png "
                                           "(default: runs/validate-latency/<target>-<precision>)."),
    recalibrate: bool = typer.Option(True, "--recalibrate/--no-recalibrate", help="A table measured on another "
                                     "machine: fit it to this one first (reference networks timed here, <= 30 s, "
                                     "cached per host)."),
) -> None:
    """Time N random candidates end to end on this machine and compare with the table's prediction."""
    _validate_latency(**locals())


@_guard
def _validate_latency(**kw: Any) -> None:
    _check_ints("validate-latency", kw)  # before the import of torch
    from autocompress.hardware.targets import (
        PRECISION_MODES,
        check_measured_here,
        get_target,
        supported_precisions,
    )
    from autocompress.space import load_space

    if kw["precision"] not in PRECISION_MODES:  # before a re-calibration of up to 30 s, not after
        raise BadInputError(f"--precision must be one of {', '.join(PRECISION_MODES)}; got {kw['precision']!r}")
    t = get_target(kw["target"])
    check_measured_here(t.device)
    supported_precisions(t.device.runtime)  # its runtime missing (OpenVINO, TensorRT): one line, now
    sp = load_space(kw["space"])
    folder = kw["out_dir"] or Path("runs") / "validate-latency" / f"{t.name}-{kw['precision']}"
    ensure_writable_dir(folder)  # before minutes of timing, not after; all of the above before torch
    from autocompress.hardware.host_fit import on_this_host
    from autocompress.hardware.validate import record_band, write_validation
    from autocompress.hardware.validate import validate_latency as run_validation

    with _progress() as progress:
        fit_task = None

        def fit_tick(done: int, total: int) -> None:
            nonlocal fit_task
            if fit_task is None:
                fit_task = progress.add_task("re-calibrating the table to this machine", total=total)
            progress.update(fit_task, completed=done, total=total)

        check = on_this_host(t, sp, channels=kw["channels"] or sp.model.input.channels, classes=kw["classes"],
                             recalibrate=kw["recalibrate"], on_progress=fit_tick)  # fmt: skip
        if check.line:
            progress.console.print(check.line, highlight=False)
        task = progress.add_task("building and timing candidates", total=kw["n"])

        def tick(stage: str, done: int, total: int) -> None:
            progress.update(task, description=f"{stage} candidates", completed=done, total=total)

        report = run_validation(
            check.target, sp, n=kw["n"], precision=kw["precision"], seed=kw["seed"], reps=kw["reps"],
            passes=kw["passes"], channels=kw["channels"] or sp.model.input.channels, classes=kw["classes"], on_progress=tick,
        )  # fmt: skip
    report.host_fit = check.to_config()
    paths = write_validation(report, folder)
    band_line = record_band(report, check.target, check.fit)
    s = report.summary()
    table = Table(title=f"Latency table {t.name} vs this machine", title_justify="left")
    for col in ("candidates", "within ±10%", "MAPE", "median error", "Spearman", "runtime", "threads"):
        table.add_column(col)
    table.add_row(str(s["candidates"]), f"{100 * report.within:.1f}%", f"{report.mape:.2f}%",
                  f"{report.bias:+.2f}%", f"{report.spearman:.4f}", str(s["runtime"]), str(report.threads))  # fmt: skip
    out.print(table)
    worst = sorted(report.points, key=lambda p: -abs(p.error))[:3]
    for p in worst:
        out.print(f"  worst: {100 * p.error:+.1f}%  predicted {p.predicted_ms:.3f} ms, measured "
                  f"{p.measured_ms:.3f} ms{'' if p.repeated else ' (timing not repeated)'}  {p.candidate}",
                  highlight=False)  # fmt: skip
    if s["not_repeated"]:
        out.print(f"note: {s['not_repeated']} of {s['candidates']} timings were not repeated within 5% even after "
                  f"re-timing (column 'repeated' in {paths['csv'].name}): this machine's speed changed while timing, "
                  f"so those errors are partly the machine's; over the {s['candidates'] - s['not_repeated']} that "
                  f"repeated, {100 * report.within_repeated:.1f}% are within ±10%", highlight=False)  # fmt: skip
    shift = report.level_shift_note()
    if shift:
        out.print(f"note: {shift}", highlight=False)
    if report.table_cpu != report.cpu:
        out.print(f"note: the table was measured on {report.table_cpu!r}; this machine is {report.cpu!r}",
                  highlight=False)  # fmt: skip
    out.print(band_line, highlight=False)
    out.print(f"wrote {paths['json']}, {paths['csv'].name}, {paths['png'].name}", highlight=False)


@app.command()
def calibrate(
    target: list[str] = typer.Argument(None, help="Estimated targets (names or aliases)."),
    all_: bool = typer.Option(False, "--all", help="Every estimated target."),
) -> None:
    """Refit an estimated target's roofline to the published figures in its device.yaml,
    print the leave-one-out errors, and regenerate its blocks.csv."""
    _calibrate(target or [], all_)


@_guard
def _calibrate(names: list[str], all_: bool) -> None:
    from autocompress.hardware.calibrate import calibrate_target, summary
    from autocompress.hardware.targets import check_writable, get_target, list_targets

    targets = [t for t in list_targets() if t.estimated] if all_ else [get_target(n) for n in names]
    if not targets:
        raise BadInputError("name at least one estimated target, or pass --all")
    for t in targets:
        check_writable(t.folder)
        out.print(summary(calibrate_target(t.folder)), highlight=False)
        out.print(f"wrote {t.folder}/device.yaml and its estimated rows (blocks.csv, layers.csv)", highlight=False)


@app.command("estimate-table")
def estimate_table(
    target: str = typer.Argument(..., help="An estimated target (its device.yaml holds the roofline)."),
    space: list[str] = typer.Option([], "--space", help="Spaces whose blocks to cover (repeatable; default: "
                                    "every shipped space)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Input channels (default: both 1 and 3)."),
    classes: int = typer.Option(10, "--classes"),
) -> None:
    """Regenerate an estimated target's blocks.csv from its roofline model (labelled estimated)."""
    _estimate_table(target, space, channels, classes)


@_guard
def _estimate_table(target: str, spaces: list[str], channels: Optional[int], classes: int) -> None:
    from autocompress.hardware.calibrate import DEFAULT_CHANNELS, default_blocks
    from autocompress.hardware.roofline import write_estimated_table
    from autocompress.hardware.targets import check_writable, get_target

    _check_ints("estimate-table", {"channels": 1 if channels is None else channels, "classes": classes})
    t = get_target(target)
    check_writable(t.folder)
    blocks = default_blocks(spaces or None, DEFAULT_CHANNELS if channels is None else (channels,), classes)
    table = write_estimated_table(t.folder, blocks)
    out.print(f"wrote {len(table.rows)} estimated rows to {t.folder}/blocks.csv", highlight=False)


# --------------------------------------------------------------------------- export / explore


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/<name>)."),
    trial: Optional[int] = typer.Option(None, "--trial", help="Export this trial number."),
    best: bool = typer.Option(False, "--best", help="Export the most accurate feasible Pareto trial."),
    budget: Optional[str] = typer.Option(None, "--budget", help="With --best: a tighter latency budget, e.g. 5ms."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or openvino (IR: .xml + .bin)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Output folder (default: RUN_DIR/exports/trial_NNNN-FORMAT)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Write a trial's deployable model and its model card; re-check its accuracy on the exported file."""
    _export(**locals())


@_guard
def _export(**kw: Any) -> None:
    from autocompress.export import FORMATS, _budget_cell, export_trial, load_run, select_trial
    from autocompress.results import RUNTIME_NAMES

    _check_ints("export", kw)
    if kw["fmt"] not in FORMATS:
        raise BadInputError(f"unknown format {kw['fmt']!r}; use one of {', '.join(FORMATS)}")
    _check_run_dir(kw["run_dir"])
    if kw["out_dir"] is not None and path_kind(kw["out_dir"]) not in (None, "a folder"):
        raise BadInputError(f"--out {kw['out_dir']} is {path_kind(kw['out_dir'])}, not a folder")
    if kw["out_dir"] is not None:  # a parent that is a file, or read-only: before any work
        ensure_writable_dir(kw["out_dir"], "--out folder")
    budget_ms = parse_budget(kw["budget"]) if kw["budget"] else None
    out_dir = kw["out_dir"]
    if out_dir is None:
        config, trials = load_run(kw["run_dir"])
        row = select_trial(trials, trial=kw["trial"], best=kw["best"], budget_ms=budget_ms,
                           budget_on=config.get("budget_on", "point"))  # fmt: skip
        out_dir = kw["run_dir"] / "exports" / f"trial_{int(row['number']):04d}-{kw['fmt']}"
    with err.status("exporting, re-checking accuracy on the exported file, timing it here"), _term_as_interrupt():
        result = export_trial(kw["run_dir"], out_dir=out_dir, fmt=kw["fmt"], trial=kw["trial"], best=kw["best"],
                              budget_ms=budget_ms, overwrite=kw["overwrite"])  # fmt: skip
    card = result.card
    p, m = card["predicted"], card["measured_here"]
    est = " ESTIMATED" if p["source"] == "estimated" else ""
    out.print(f"exported trial {card['run']['trial']} ({card['format']}) to {result.out_dir}/", highlight=False)
    out.print(f"  files: {', '.join(card['files'])} ({format_bytes(card['size_bytes'])}), model_card.md, "
              "model_card.json", highlight=False)  # fmt: skip
    acc = card["accuracy"]
    same = "matches the trials table" if acc["test"] == acc["test_in_trials_table"] else (
        f"trials table {100 * acc['test_in_trials_table']:.2f}% with "
        f"{RUNTIME_NAMES.get(acc['scored_with'], acc['scored_with'])}, within the allowed "
        f"{100 * acc['allowed_difference']:.1f} points")  # fmt: skip
    out.print(f"  test accuracy {100 * acc['test']:.2f}% ({acc['measured_with']}; {same})", highlight=False)
    iv = p.get("latency_interval_ms")
    rng = f" [{format_ms(iv[0])} – {format_ms(iv[1])}]" if iv else ""
    out.print(f"  predicted on {p['target']}: {format_ms(p['latency_ms'])}{rng}{est}; measured here: "
              f"{format_ms(m['median_ms'])} ({m['runtime']} {m['runtime_version']}, 1 thread)", highlight=False)  # fmt: skip
    if p.get("budget_ms") is not None:
        out.print(f"  the run's budget: {_budget_cell(card).replace('**', '')}", highlight=False)
    if card["dataset"]["input"].get("resize"):
        out.print(f"  input: {card['dataset']['input']['resize']}", highlight=False)


@app.command()
def explore(
    run_dir: Optional[Path] = typer.Argument(None, help="Open this run (default: pick one in --runs-dir)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder of run directories to pick from."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
) -> None:
    """Open the Streamlit Pareto explorer over run directories."""
    _explore(run_dir, runs_dir, host, port)


@_guard
def _explore(run_dir: Optional[Path], runs_dir: Path, host: str, port: int) -> None:
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise BadInputError("the explorer needs Streamlit: pip install 'autocompress[app]'") from None
    _check_ints("explore", {"port": port})
    if run_dir is not None and path_kind(run_dir) is None:
        raise RunDirError(f"run directory {run_dir} does not exist")
    _check_run_dir(run_dir)
    _check_run_dir(runs_dir, "--runs-dir")
    _check_can_serve(host, port)
    from autocompress.app import EXPLORER

    env = {**os.environ, "AUTOCOMPRESS_RUNS_DIR": str((run_dir.parent if run_dir else runs_dir).resolve())}
    if run_dir is not None:
        env["AUTOCOMPRESS_RUN"] = str(run_dir.resolve())
    cmd = [sys.executable, "-m", "streamlit", "run", str(EXPLORER), "--server.headless", "true",
           "--server.address", host, "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--global.developmentMode", "false", "--client.toolbarMode", "minimal"]  # fmt: skip
    out.print(f"explorer: http://{host}:{port}  (Ctrl-C to stop)", highlight=False)
    sys.stdout.flush()
    # become the Streamlit server (exec, not a child): signals reach it, nothing is left orphaned
    os.execve(sys.executable, cmd, env)


@contextlib.contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``) as Ctrl-C while the body runs: its cleanup runs (Python's
    default would end the process there, leaving a temporary folder behind)."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave it as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_can_serve(host: str, port: int) -> None:
    """Bind ``host:port`` as Streamlit will (and let go): a port in use or an address that is not
    this machine's is one line, before the server prints a URL that is not ours (or a traceback)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family=family) as sock:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as exc:
            raise BadInputError(f"--host {host} cannot be resolved ({exc.strerror})") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BadInputError(f"port {port} on {host} is already in use (another explorer?); "
                                    "pick another with --port") from None  # fmt: skip
            raise BadInputError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- data


@data_app.command("check")
def data_check(data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Look only in this folder (default: "
                                                       "the Debian package's, $AUTOCOMPRESS_DATA, the cache).")) -> None:
    """Exit 0 if Fashion-MNIST is present, else say where it was looked for and exit 2."""
    _data_check(data_dir)


@_guard
def _data_check(data_dir: Optional[Path]) -> None:
    from autocompress.data_files import FASHION_HINT, fashion_mnist_dirs, find_fashion_mnist
    from autocompress.exceptions import DatasetError

    folder = find_fashion_mnist(data_dir)
    if folder is None:
        where = ", ".join(str(d) for d in fashion_mnist_dirs(data_dir))
        raise DatasetError(f"Fashion-MNIST not found (looked in {where}); {FASHION_HINT}")
    out.print(f"Fashion-MNIST found in {folder}")


@data_app.command("download")
def data_download(
    dest: Optional[Path] = typer.Option(None, "--dest", help="Folder (default: the cache)."),
    url: str = typer.Option("", "--url", help="Mirror base URL (default: the official one)."),
) -> None:
    """Download Fashion-MNIST (needs internet) into the cache, checking md5 sums."""
    _data_download(dest, url)


@_guard
def _data_download(dest: Optional[Path], url: str) -> None:
    from autocompress.data_files import FASHION_URL, download_fashion_mnist

    folder = download_fashion_mnist(dest, base_url=url or FASHION_URL)
    out.print(f"Fashion-MNIST downloaded to {folder}")


def _is_usage_error(exc: BaseException) -> TypeGuard[click_exceptions.ClickException]:
    """A command-line usage error (missing option, bad value, unknown verb) from typer's click."""
    return isinstance(exc, click_exceptions.ClickException)


def run() -> None:
    """Console-script entry point: exit 0, 2 (bad input), 3 (no candidate met the budget),
    130 (interrupted) or 1 (a bug; ``--debug`` shows its traceback)."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    try:
        code = app(standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as exc:
        if isinstance(exc, click_exceptions.NoArgsIsHelpError):  # bare 'autocompress': the help, as before
            out.print(exc.format_message(), highlight=False, markup=False)
            sys.exit(2)
        if _is_usage_error(exc):
            ctx = getattr(exc, "ctx", None)  # UsageError and its subclasses carry the command
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            err.print(f"[bold red]error:[/] {_one_line(Exception(exc.format_message()))}{where}",
                      highlight=False, soft_wrap=True)  # fmt: skip
            sys.exit(exc.exit_code)
        if isinstance(exc, typer.Abort):  # Ctrl-C at a prompt
            sys.exit(130)
        if _state["debug"]:
            raise
        err.print(f"[bold red]internal error[/] (a bug): {type(exc).__name__}: {_one_line(exc)}; "
                  "rerun with --debug for the traceback", highlight=False, soft_wrap=True)  # fmt: skip
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
