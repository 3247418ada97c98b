"""Bad input, every verb: one line on stderr, the documented exit code, no traceback, nothing
half-written.

``CASES`` is the table: (id, argv, stderr fragments, exit code) plus what a case needs on disk.
Each case runs the installed ``autocompress`` command in a subprocess, in its own temporary
folder (``{tmp}`` in argv and env); afterwards that folder must hold exactly the files the case
put there (a refused command writes nothing) and no temporary file. Extend it by adding rows.
``AUTOCOMPRESS_BAD_INPUT_MD=path`` writes the observed stderr line of every case as a Markdown
table (``benchmarks/results/bad_input.md``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from autocompress import __version__
from autocompress.space import load_space
from tests.helpers import ROOT, micro_space_text

TINY = (ROOT / "search_spaces" / "tiny.yaml").read_text()
TABLE = ROOT / "hw_latency_tables" / "x86-cpu-onnxruntime"
_tiny = load_space("tiny")
TINY_FP = f"{_tiny.arch_fingerprint()}-{_tiny.size()}"
SEARCH = ("search", "--target", "cpu", "--budget", "5ms", "--space", "tiny", "--subset", "300")


def autocompress_cmd() -> list[str]:
    """The console script installed beside this interpreter (what a user runs), else ``-m``."""
    script = Path(sys.executable).parent / "autocompress"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "autocompress"]


def tiny_with(old: str, new: str) -> str:
    assert old in TINY, old
    return TINY.replace(old, new)


def run_config(**changes: object) -> str:
    """config.yaml of a tiny search on cpu at 5 ms, as a run directory holds it."""
    cfg = {"autocompress_version": __version__, "target": "x86-cpu-onnxruntime", "budget_ms": 5.0,
           "space_fingerprint": TINY_FP, "seed": 0, "trials": 2}  # fmt: skip
    cfg.update(changes)
    return yaml.safe_dump(cfg)


SQLITE_HEADER = b"SQLite format 3\x00" + bytes(84)


def _table(mutate: Callable[[Path], None]) -> Callable[[Path], dict[str, str]]:
    """A copy of the measured CPU table under {tmp}/tables, changed by ``mutate``, found first
    through $AUTOCOMPRESS_TABLES (same name: it shadows the shipped one)."""

    def setup(tmp: Path) -> dict[str, str]:
        folder = tmp / "tables" / TABLE.name
        shutil.copytree(TABLE, folder)
        mutate(folder)
        return {"AUTOCOMPRESS_TABLES": str(tmp / "tables")}

    return setup


def _edit(name: str, fn: Callable[[str], str]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        (folder / name).write_text(fn((folder / name).read_text()))

    return mutate


def _truncate_csv(text: str) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:5]) + "\n" + lines[5][: len(lines[5]) // 2] + "\n"


def _row_value(col: int, value: str) -> Callable[[str], str]:
    def fn(text: str) -> str:
        lines = text.splitlines()
        cells = lines[3].split(",")
        cells[col] = value
        lines[3] = ",".join(cells)
        return "\n".join(lines) + "\n"

    return fn


# ----------------------------------------------------------------------------- read-only folders

_mounts: list[Path] = []
_mount_lock = threading.Lock()


def _mount_ro(path: Path, source: Path | None = None) -> str | None:
    """Make ``path`` a read-only mount (an empty tmpfs, or a bind of ``source``); root's chmod
    does not stop writes. Returns why it cannot, or None."""
    if not shutil.which("mount"):
        return "no mount command"
    path.mkdir(parents=True, exist_ok=True)
    if source is None:
        cmds = [["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)]]
    else:
        cmds = [["mount", "--bind", str(source), str(path)],
                ["mount", "-o", "remount,bind,ro", str(path)]]  # fmt: skip
    for i, cmd in enumerate(cmds):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            if i:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)
            return f"cannot mount read-only here ({' '.join(cmd[:3])}: {proc.stderr.strip()[:120]})"
    with _mount_lock:
        _mounts.append(path)
    probe = path / ".probe"
    try:
        probe.write_text("")
    except OSError:
        return None
    probe.unlink()
    return "a read-only mount is writable here"


def _readonly(sub: str) -> Callable[[Path], dict[str, str]]:
    def setup(tmp: Path) -> dict[str, str]:
        why = _mount_ro(tmp / sub)
        if why:
            pytest.skip(why)
        return {}

    return setup


def _readonly_run(tmp: Path) -> dict[str, str]:
    """A complete-looking run directory of a tiny search, mounted read-only."""
    src = tmp / "src"
    src.mkdir()
    (src / "config.yaml").write_text(run_config())
    (src / "study.db").write_bytes(SQLITE_HEADER)
    why = _mount_ro(tmp / "run", src)
    if why:
        pytest.skip(why)
    return {}


def _one_class_folder(tmp: Path) -> dict[str, str]:
    (tmp / "imgs" / "cats").mkdir(parents=True)
    return {}


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    fragments: tuple[str, ...]
    code: int = 2
    files: dict[str, str | bytes] = field(default_factory=dict)  # written under {tmp} first
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], dict[str, str]] | None = None  # more set-up; returns env additions


C = Case
CASES: list[Case] = [
    # --- search: budgets and sizes (10 ms with a space is accepted: see test_units)
    C("budget-no-unit", (*SEARCH[:4], "10"), ("budget must be", "has no unit", "did you mean '10ms'")),
    C("budget-words", (*SEARCH[:4], "ten ms"), ("budget must be a positive number with a unit", "'ten ms'")),
    C("budget-negative", (*SEARCH[:4], "-1ms"), ("'-1ms'", "not greater than 0")),
    C("budget-zero", (*SEARCH[:4], "0ms"), ("'0ms'", "not greater than 0")),
    C("budget-overflow", (*SEARCH[:4], "1e999ms"), ("'1e999ms'", "not finite")),
    C("budget-nan", (*SEARCH[:4], "nanms"), ("budget must be", "'nanms'")),
    C("budget-unknown-unit", (*SEARCH[:4], "10min"), ("e.g. 10ms, 0.5ms, 800us, 1s", "'10min'")),
    C("max-size-no-unit", (*SEARCH, "--max-size", "500"), ("size must be", "did you mean '500KB'")),
    # --- search: the command line itself
    C("missing-budget", ("search", "--target", "cpu"), ("Missing option '--budget'", "autocompress search --help")),
    C("trials-not-a-number", (*SEARCH, "--trials", "abc"), ("Invalid value for '--trials'",)),
    C("trials-zero", (*SEARCH, "--trials", "0"), ("--trials must be at least 1",)),
    C("timeout-negative", (*SEARCH, "--timeout", "-5"), ("--timeout must be a positive number",)),
    C("unknown-sampler", (*SEARCH, "--sampler", "cmaes"), ("unknown sampler 'cmaes'", "tpe, nsga2, gp, random")),
    C("unknown-verb", ("serach",), ("No such command 'serach'",)),
    # --- search: targets
    C("unknown-target", ("search", "--target", "jetsn-orin", "--budget", "10ms"),
      ("unknown target 'jetsn-orin'", "did you mean", "jetson-orin-nano")),
    C("target-without-fp16", ("search", "--target", "cpu", "--budget", "5ms", "--space", "{tmp}/s.yaml"),
      ("uses fp16 but target x86-cpu-onnxruntime runs fp32, int8",),
      files={"s.yaml": tiny_with("precision: [fp32, int8]", "precision: [fp32, fp16]")}),
    # --- search: spaces
    C("space-missing", (*SEARCH[:5], "--space", "{tmp}/nope.yaml"), ("does not exist", "shipped spaces: fashion_mnist, tiny")),
    C("space-not-yaml", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("is not valid YAML at line 3",),
      files={"s.yaml": "name: s\ninput: {resolution: [28]\n"}),
    C("space-empty-file", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("must be a YAML mapping",), files={"s.yaml": ""}),
    C("space-binary", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("not a text file",), files={"s.yaml": b"\xff\xfe\x00\x81"}),
    C("space-folder", (*SEARCH[:5], "--space", "{tmp}"), ("is a folder, not a YAML file",)),
    C("space-python-tag", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("could not determine a constructor", "python/object"),
      files={"s.yaml": "!!python/object/apply:os.system ['touch pwned']\n"}),
    C("space-empty-choices", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("stages.0: depth needs at least one choice",),
      files={"s.yaml": tiny_with("depth: [1, 2]", "depth: []")}),
    C("space-unknown-key", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("stages.1.colour: Extra inputs are not permitted",),
      files={"s.yaml": tiny_with("expand: [2], stride: 2}\n\n", "expand: [2], stride: 2, colour: red}\n\n")}),
    C("space-wrong-type", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("stages.0.width.0: Input should be a valid integer",),
      files={"s.yaml": tiny_with("width: [8, 12]", "width: [eight, 12]")}),
    C("space-even-kernel", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("kernel sizes must be odd",),
      files={"s.yaml": tiny_with("kernel: [3, 5]", "kernel: [3, 4]")}),
    C("space-under-one-pixel", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("downsample 256x", "12 px"),
      files={"s.yaml": TINY.replace("stages:\n", "stages:\n" + "  - {depth: [1], width: [8], kernel: [3], expand: [2], stride: 2}\n" * 6)
             .replace("resolution: [12, 16]", "resolution: [12]")}),  # fmt: skip
    C("space-absurd-width", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("width must be within 1..4096",),
      files={"s.yaml": tiny_with("width: [16, 24]", "width: [16, 100000]")}),
    C("space-prune-all", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("prune_ratio must be within [0, 1)",),
      files={"s.yaml": tiny_with("prune_ratio: [0.0, 0.5]", "prune_ratio: [0.0, 1.0]")}),
    # --- search: data
    C("data-missing", (*SEARCH, "--data-dir", "{tmp}/empty", "--run-dir", "{tmp}/run"),
      ("Fashion-MNIST not found", "{tmp}/empty", "apt-get install dataset-fashion-mnist", "--data-dir"),
      files={"empty/.keep": ""}),
    C("data-unknown", (*SEARCH, "--dataset", "cifar", "--run-dir", "{tmp}/run"), ("unknown data set 'cifar'",)),
    C("data-imagefolder-missing", (*SEARCH, "--dataset", "imagefolder:{tmp}/none", "--run-dir", "{tmp}/run"),
      ("imagefolder", "is not a folder")),
    C("data-imagefolder-one-class", (*SEARCH, "--dataset", "imagefolder:{tmp}/imgs", "--run-dir", "{tmp}/run"),
      ("needs one sub-folder per class",), setup=_one_class_folder),
    # --- search: run directories
    C("resume-missing-run", (*SEARCH, "--resume", "--run-dir", "{tmp}/nothing"), ("cannot resume", "study.db is missing")),
    C("resume-other-search", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"),
      ("cannot resume", "started with budget_ms=7.0, not 5.0"),
      files={"run/config.yaml": run_config(budget_ms=7.0), "run/study.db": SQLITE_HEADER}),
    C("resume-other-version", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"), ("written by autocompress 0.0.1", "start a new run"),
      files={"run/config.yaml": run_config(autocompress_version="0.0.1"), "run/study.db": SQLITE_HEADER}),
    C("resume-not-autocompress", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"), ("not written by autocompress",),
      files={"run/config.yaml": "name: something else\n", "run/study.db": SQLITE_HEADER}),
    C("resume-config-garbage", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"), ("config.yaml is unreadable",),
      files={"run/config.yaml": "{: [\n", "run/study.db": SQLITE_HEADER}),
    C("resume-study-corrupt", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"), ("study.db is not an SQLite database",),
      files={"run/config.yaml": run_config(), "run/study.db": b"half a datab"}),
    C("run-exists", (*SEARCH, "--run-dir", "{tmp}/run"), ("already holds a search", "--resume"),
      files={"run/config.yaml": run_config(), "run/study.db": SQLITE_HEADER}),
    C("run-dir-read-only", (*SEARCH, "--run-dir", "{tmp}/ro/run"), ("cannot write to run directory", "Read-only file system"),
      setup=_readonly("ro")),
    C("resume-read-only", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"),
      ("cannot write to run directory", "Read-only file system"), setup=_readonly_run),
    # --- corrupt or truncated latency tables (a copy found through $AUTOCOMPRESS_TABLES)
    C("table-truncated", (*SEARCH[:5],), ("blocks.csv: row 6 has", "columns, expected 15"),
      setup=_table(_edit("blocks.csv", _truncate_csv))),
    C("table-not-a-number", (*SEARCH[:5],), ("blocks.csv: row 4, column latency_ms: 'fast' is not a number",),
      setup=_table(_edit("blocks.csv", _row_value(11, "fast")))),
    C("table-nan-latency", (*SEARCH[:5],), ("row 4, column latency_ms: must be finite",),
      setup=_table(_edit("blocks.csv", _row_value(11, "nan")))),
    C("table-empty-csv", (*SEARCH[:5],), ("blocks.csv: header must be op,in_h",), setup=_table(_edit("blocks.csv", lambda t: ""))),
    C("table-binary-csv", (*SEARCH[:5],), ("blocks.csv: not readable",),
      setup=_table(lambda f: (f / "blocks.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe"))),
    C("table-no-csv", (*SEARCH[:5],), ("has no blocks.csv",), setup=_table(lambda f: (f / "blocks.csv").unlink())),
    C("table-device-yaml-broken", (*SEARCH[:5],), ("device.yaml: not readable YAML",),
      setup=_table(_edit("device.yaml", lambda t: t + "\n  bad: [indent\n"))),
    C("table-device-yaml-schema", (*SEARCH[:5],), ("device.yaml: field precisions.0",),
      setup=_table(_edit("device.yaml", lambda t: t.replace("- fp32", "- fp64", 1)))),
    C("targets-corrupt-table", ("targets",), ("device.yaml: field overhead_ms",),
      setup=_table(_edit("device.yaml", lambda t: t.replace("overhead_ms:", "overhead_ms: -1\nold_overhead_ms:", 1)))),
    # --- profile
    C("profile-runtime", ("profile", "--runtime", "tensorrt"), ("--runtime must be one of onnxruntime, openvino",)),
    C("profile-precision", ("profile", "--space", "tiny", "--precision", "fp16", "--out", "{tmp}/t"), ("runs fp32, int8; got fp16",)),
    C("profile-threads", ("profile", "--space", "tiny", "--threads", "0", "--out", "{tmp}/t"), ("--threads must be >= 1",)),
    C("profile-space-missing", ("profile", "--space", "{tmp}/x.yaml", "--out", "{tmp}/t"), ("does not exist",)),
    C("profile-out-read-only", ("profile", "--space", "tiny", "--out", "{tmp}/ro/table"),
      ("cannot write to table folder", "Read-only file system"), setup=_readonly("ro")),
    # --- validate-latency
    C("validate-estimated", ("validate-latency", "--target", "jetson", "--out", "{tmp}/v"), ("is estimated, not measured here",)),
    C("validate-n", ("validate-latency", "-n", "1", "--space", "tiny", "--out", "{tmp}/v"), ("-n must be at least 3",)),
    C("validate-precision", ("validate-latency", "-n", "3", "--space", "tiny", "--precision", "fp64", "--out", "{tmp}/v"),
      ("--precision must be one of",)),
    C("validate-target", ("validate-latency", "--target", "x86-cpu-onnxrt"), ("unknown target", "did you mean x86-cpu-onnxruntime")),
    C("validate-out-read-only", ("validate-latency", "--space", "tiny", "--out", "{tmp}/ro/v"),
      ("cannot write to output folder", "Read-only file system"), setup=_readonly("ro")),
    # --- calibrate / estimate-table
    C("calibrate-measured", ("calibrate", "cpu"), ("is a measured table; only estimated tables are calibrated",)),
    C("calibrate-nothing", ("calibrate",), ("name at least one estimated target, or pass --all",)),
    C("calibrate-unknown", ("calibrate", "rpi"), ("unknown target 'rpi'", "did you mean")),
    C("estimate-table-unknown", ("estimate-table", "jetson-orin-nanoo"), ("did you mean jetson-orin-nano",)),
    # --- data
    C("data-check-missing", ("data", "check", "--data-dir", "{tmp}/empty"), ("Fashion-MNIST not found", "apt-get install"),
      files={"empty/.keep": ""}),
    C("data-download-bad-url", ("data", "download", "--url", "notaurl", "--dest", "{tmp}/dl"), ("--url must be an http://",)),
    C("data-download-unreachable", ("data", "download", "--url", "http://127.0.0.1:9/", "--dest", "{tmp}/dl"),
      ("cannot download http://127.0.0.1:9/train-images-idx3-ubyte.gz", "Connection refused"), files={"dl/.keep": ""}),
    C("data-download-read-only", ("data", "download", "--url", "http://127.0.0.1:9/", "--dest", "{tmp}/ro/dl"),
      ("{tmp}/ro/dl", "Read-only file system"), setup=_readonly("ro")),
    # --- search: scaling options (issue 7)
    C("storage-unknown-backend", (*SEARCH, "--storage", "mysql://x"), ("cannot open storage mysql://x",)),
    C("backend-unknown", (*SEARCH, "--backend", "spark"), ("--backend must be local or ray; got 'spark'",)),
    C("workers-zero", (*SEARCH, "--backend", "ray", "--workers", "0"), ("--workers must be at least 1",)),
    C("warm-start-missing", (*SEARCH, "--warm-start", "{tmp}/nope"), ("cannot warm-start from", "no pareto.csv")),
    # --- export and explore (issue 6; more in tests/test_export.py and tests/app/)
    C("export-missing-run", ("export", "{tmp}/nope", "--best", "--format", "onnx"), ("run directory", "does not exist")),
    C("export-unknown-format", ("export", "{tmp}/nope", "--best", "--format", "tflite"),
      ("unknown format 'tflite'; use one of onnx, openvino",)),
    C("explore-missing-run", ("explore", "{tmp}/nope"), ("run directory", "does not exist")),
    C("explore-bad-port", ("explore", "--port", "99999"), ("--port must be between 1 and 65535",)),
]  # fmt: skip
BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"

TEMP_SUFFIXES = (".tmp", ".part")


@dataclass
class Outcome:
    case: Case
    tmp: Path
    before: set[str]
    proc: subprocess.CompletedProcess | None = None
    skip: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def _fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


def _prepare(case: Case, tmp: Path) -> Outcome:
    env: dict[str, str] = {}
    for name, content in case.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if case.setup is not None:
        try:
            env.update(case.setup(tmp))
        except pytest.skip.Exception as exc:
            return Outcome(case, tmp, set(), skip=str(exc))
    return Outcome(case, tmp, _files(tmp), env=env)


def _execute(outcome: Outcome) -> Outcome:
    if outcome.skip:
        return outcome
    case, tmp = outcome.case, outcome.tmp
    env = {**os.environ, "COLUMNS": "200", **{k: _fill(v, tmp) for k, v in case.env.items()},
           **outcome.env}  # fmt: skip
    argv = [_fill(a, tmp) for a in case.argv]
    outcome.proc = subprocess.run([*autocompress_cmd(), *argv], capture_output=True, text=True,
                                  timeout=300, cwd=ROOT, env=env)  # fmt: skip
    return outcome


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, fashion_dir: Path):
    """Every case, run three at a time (each is a cold start of the command; the table stays
    one test per row)."""
    prepared = [_prepare(c, tmp_path_factory.mktemp(c.id)) for c in CASES]
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            done = {o.case.id: o for o in pool.map(_execute, prepared)}
        yield done
    finally:
        for path in reversed(_mounts):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        _mounts.clear()
        md = os.environ.get("AUTOCOMPRESS_BAD_INPUT_MD")
        if md:
            write_markdown(Path(md), [o for o in prepared if o.proc is not None or o.skip])


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]


@pytest.mark.e2e
@pytest.mark.parametrize("case_id", list(BY_ID))
def test_bad_input_is_one_line_and_writes_nothing(outcomes: dict[str, Outcome], case_id: str) -> None:
    o = outcomes[case_id]
    if o.skip:
        pytest.skip(o.skip)
    proc, case = o.proc, o.case
    assert proc is not None
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "internal error" not in proc.stderr
    assert proc.returncode == case.code, (proc.returncode, proc.stderr[-2000:])
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for frag in case.fragments:
        assert _fill(frag, o.tmp) in lines[0], (frag, lines[0])
    after = _files(o.tmp)
    assert after == o.before, f"the refused command wrote {sorted(after - o.before)}"
    assert not [p for p in after if p.endswith(TEMP_SUFFIXES)]


# Rows of the searches below (they run after the table, before its fixture writes the file).
OBSERVED: list[str] = []


def _observe(case_id: str, proc: subprocess.CompletedProcess, tmp: Path) -> None:
    argv = " ".join(str(a) for a in proc.args[len(autocompress_cmd()):]).replace(str(tmp), "$TMP")
    argv = re.sub(r"\S*/micro\.yaml", "micro.yaml", argv)
    line = " / ".join(stderr_lines(proc)[:3]).replace("|", "\\|") or "(nothing)"
    OBSERVED.append(f"| {case_id} | `autocompress {argv}` | {proc.returncode} | {line.replace(str(tmp), '$TMP')} |")


def write_markdown(path: Path, outcomes: list[Outcome]) -> None:
    rows = ["| case | command | exit | stderr (observed) |", "|---|---|---:|---|"]
    for o in outcomes:
        argv = " ".join(a if " " not in a else repr(a) for a in o.case.argv).replace("|", "\\|")
        argv = argv.replace(str(o.tmp), "$TMP").replace("{tmp}", "$TMP")
        if o.skip:
            rows.append(f"| {o.case.id} | `autocompress {argv}` | skipped | {o.skip} |")
            continue
        assert o.proc is not None
        line = " / ".join(stderr_lines(o.proc)).replace(str(o.tmp), "$TMP").replace(str(ROOT), ".")
        line = line.replace("|", "\\|")
        rows.append(f"| {o.case.id} | `autocompress {argv}` | {o.proc.returncode} | {line} |")
    text = ("# Bad input: every case and what the user sees\n\nGenerated by `AUTOCOMPRESS_BAD_INPUT_MD="
            f"benchmarks/results/bad_input.md pytest tests/test_bad_input.py` (autocompress {__version__}); "
            "every row is also a test: exit code, one stderr line with the expected fragments, no "
            "traceback, nothing written. `$TMP` is the case's temporary folder.\n\n" + "\n".join(rows) + "\n")
    if OBSERVED:
        text += ("\nSearches that run (micro space, 300-image subset; tests `test_budget_no_candidate_meets_*`, "
                 "`test_nan_loss_*`, `test_full_disk_*`):\n\n| case | command | exit | stderr (observed) |\n"
                 "|---|---|---:|---|\n" + "\n".join(OBSERVED) + "\n")
    path.write_text(text)


# ----------------------------------------------------------------------------- --debug, every verb

DEBUG_CASES = {  # one refused command per verb: under --debug the traceback, then the same line
    "search": ("budget-no-unit", "BadInputError"),
    "targets": ("targets-corrupt-table", "TargetError"),
    "profile": ("profile-runtime", "BadInputError"),
    "validate-latency": ("validate-n", "BadInputError"),
    "calibrate": ("calibrate-nothing", "BadInputError"),
    "estimate-table": ("estimate-table-unknown", "TargetError"),
    "data check": ("data-check-missing", "DatasetError"),
    "data download": ("data-download-bad-url", "DatasetError"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("verb", list(DEBUG_CASES))
def test_debug_shows_the_traceback_and_keeps_the_exit_code(verb: str, tmp_path: Path, fashion_dir: Path) -> None:
    case_id, exc_name = DEBUG_CASES[verb]
    case = BY_ID[case_id]
    o = _prepare(case, tmp_path)
    if o.skip:
        pytest.skip(o.skip)
    o = _execute(Outcome(Case(case.id, ("--debug", *case.argv), case.fragments, case.code, env=case.env), tmp_path,
                         o.before, env=o.env))  # fmt: skip
    proc = o.proc
    assert proc is not None
    assert proc.returncode == case.code, proc.stderr[-2000:]
    assert "Traceback (most recent call last)" in proc.stderr
    assert f"autocompress.exceptions.{exc_name}" in proc.stderr
    last = stderr_lines(proc)[-1]
    assert last.startswith("error: ") and _fill(case.fragments[0], tmp_path) in last


def test_internal_errors_are_one_line_without_debug(tmp_path: Path) -> None:
    """A bug (not bad input) says so in one line and exits 1; --debug shows where."""
    script = tmp_path / "bug.py"
    script.write_text(
        "import sys\nfrom autocompress import cli\n"
        "@cli.app.command('boom')\ndef boom() -> None:\n    {}['missing']\n"
        "sys.argv = ['autocompress', *sys.argv[1:]]\ncli.run()\n"
    )
    proc = subprocess.run([sys.executable, str(script), "boom"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert stderr_lines(proc) == ["internal error (a bug): KeyError: 'missing'; rerun with --debug for the traceback"]
    proc = subprocess.run([sys.executable, str(script), "--debug", "boom"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "KeyError" in proc.stderr


# ----------------------------------------------------------------------------- runs that search


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory, fashion_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("micro") / "micro.yaml"
    path.write_text(micro_space_text())
    return path


def _micro_search(space: Path, run_dir: Path, *extra: str, budget: str = "1s", trials: int = 4):
    return subprocess.run(
        [*autocompress_cmd(), "search", "--space", str(space), "--target", "cpu", "--budget", budget,
         "--subset", "300", "--sampler", "random", "--trials", str(trials), "--run-dir", str(run_dir), *extra],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


@pytest.mark.e2e
@pytest.mark.slow
def test_budget_no_candidate_meets_exits_3_and_keeps_results(micro: Path, tmp_path: Path) -> None:
    proc = _micro_search(micro, tmp_path / "run", budget="1us", trials=2)
    _observe("budget-infeasible", proc, tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    (line,) = stderr_lines(proc)
    assert "no candidate met the budget of 0.001 ms" in line and "the fastest of 2 took" in line
    assert "Traceback" not in proc.stderr
    trials = __import__("pandas").read_parquet(tmp_path / "run" / "trials.parquet")
    assert (trials["state"] == "COMPLETE").sum() == 2 and not trials["feasible"].any()
    assert f"{trials['latency_ms'].min():.3f} ms" in line  # the fastest seen, as measured
    assert not [p for p in _files(tmp_path) if p.endswith(TEMP_SUFFIXES)]


@pytest.mark.e2e
@pytest.mark.slow
def test_nan_loss_fails_the_trial_and_the_search_goes_on(micro: Path, tmp_path: Path) -> None:
    """An absurd fine-tune learning rate (1e30) makes the loss NaN within a few steps: the
    trials that fine-tune (the two seeded ones among them) fail with the reason recorded, the
    others complete, the search ends normally."""
    space = tmp_path / "nan.yaml"
    space.write_text(micro.read_text().replace("finetune_steps: [0]", "finetune_steps: [5, 0]")
                     .replace("finetune_lr: 0.01", "finetune_lr: 1.0e+30"))  # fmt: skip
    proc = _micro_search(space, tmp_path / "run", trials=3)
    _observe("nan-loss (trials fail, search goes on)", proc, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    trials = __import__("pandas").read_parquet(tmp_path / "run" / "trials.parquet")
    failed = trials[trials["state"] == "FAIL"]
    assert len(failed) >= 2 and (trials["state"] == "COMPLETE").sum() == 3
    assert failed["error"].str.contains("FloatingPointError: fine-tune loss became").all()
    assert (failed["finetune_steps"] == 5).all()
    assert "fine-tune loss became" in proc.stderr  # the warning names the cause


@pytest.mark.e2e
@pytest.mark.slow
def test_full_disk_stops_with_one_line_keeps_trials_and_resumes(micro: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True,
                             text=True) if shutil.which("mount") else None  # fmt: skip
    if mounted is None or mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() if mounted else 'no mount'}")
    try:
        run_dir = disk / "run"
        proc = _micro_search(micro, run_dir, trials=20)
        _observe("full-disk (256 KB tmpfs)", proc, tmp_path)
        assert proc.returncode == 2, proc.stderr[-2000:]
        (line,) = stderr_lines(proc)
        assert "No space left on device" in line and "continue with --resume" in line
        assert "Traceback" not in proc.stderr
        assert not [p for p in _files(disk) if p.endswith(TEMP_SUFFIXES)]
        import optuna

        study = optuna.load_study(study_name="autocompress", storage=f"sqlite:///{run_dir / 'study.db'}")
        kept = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
        assert kept  # the trials completed before the disk filled are in the study
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        resumed = _micro_search(micro, run_dir, "--resume", trials=len(kept) + 2)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        study = optuna.load_study(study_name="autocompress", storage=f"sqlite:///{run_dir / 'study.db'}")
        done = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
        assert len(done) == len(kept) + 2 and all(done[n] == v for n, v in kept.items())
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)  # lazy: SQLite may hold it
