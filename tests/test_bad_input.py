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
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from autocompress import __version__
from autocompress.space import load_space
from tests.helpers import ROOT, micro_space_text

TINY_PATH = ROOT / "search_spaces" / "tiny.yaml"
TINY = TINY_PATH.read_text()
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


def _table(mutate: Callable[[Path], None], source: Path = TABLE) -> Callable[[Path], dict[str, str]]:
    """A copy of a shipped table (the measured CPU one) under {tmp}/tables, changed by ``mutate``,
    found first through $AUTOCOMPRESS_TABLES (same name: it shadows the shipped one)."""

    def setup(tmp: Path) -> dict[str, str]:
        folder = tmp / "tables" / source.name
        shutil.copytree(source, folder)
        mutate(folder)
        return {"AUTOCOMPRESS_TABLES": str(tmp / "tables")}

    return setup


def _edit(name: str, fn: Callable[[str], str]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        (folder / name).write_text(fn((folder / name).read_text()))

    return mutate


def _without_band(folder: Path) -> None:
    """The table's device.yaml with no held-out error band (whatever the shipped one records)."""
    device = yaml.safe_load((folder / "device.yaml").read_text())
    device.pop("error_band", None)
    (folder / "device.yaml").write_text(yaml.safe_dump(device, sort_keys=False))


def _truncate_csv(text: str) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:5]) + "\n" + lines[5][: len(lines[5]) // 2] + "\n"


def _without_precision(precision: str) -> Callable[[str], str]:
    """blocks.csv without its rows of ``precision`` (which device.yaml still lists)."""
    return lambda text: "".join(ln for ln in text.splitlines(keepends=True) if f",{precision}," not in ln)


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


def _readonly_finished_run(tmp: Path) -> dict[str, str]:
    """A finished-looking run directory (config and trials table), mounted read-only."""
    src = tmp / "src"
    src.mkdir()
    (src / "config.yaml").write_text(run_config())
    (src / "trials.parquet").write_bytes(_trials_parquet())
    why = _mount_ro(tmp / "run", src)
    if why:
        pytest.skip(why)
    return {}


def _copied_run_without_study(tmp: Path) -> dict[str, str]:
    """{tmp}/run: a copy of {tmp}/orig's config.yaml (same 'created', its study.db named), no study.db."""
    storage = {"url": f"sqlite:///{tmp / 'orig' / 'study.db'}", "kind": "sqlite"}
    for name in ("orig", "run"):
        (tmp / name).mkdir()
        (tmp / name / "config.yaml").write_text(run_config(created="2026-01-02T03:04:05+00:00", storage=storage))
    (tmp / "orig" / "study.db").write_bytes(SQLITE_HEADER)
    return {}


def _one_class_folder(tmp: Path) -> dict[str, str]:
    (tmp / "imgs" / "cats").mkdir(parents=True)
    return {}


def _fifo(*names: str) -> Callable[[Path], dict[str, str]]:
    """Named pipes under {tmp}: a reader that opens one blocks until a writer comes (never here)."""

    def setup(tmp: Path) -> dict[str, str]:
        for name in names:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(tmp / name)
        return {}

    return setup


def _idx(*shape: int, fill: int = 0) -> bytes:
    """An unsigned-byte idx file holding an array of ``shape``."""
    n = 1
    for d in shape:
        n *= d
    return bytes([0, 0, 8, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + bytes([fill]) * n


def _fashion(**changed: bytes) -> dict[str, str | bytes]:
    """Fashion-MNIST's four idx files in {tmp}/d (20 train, 10 test images of 28x28), some replaced."""
    files: dict[str, str | bytes] = {"d/train-images-idx3-ubyte": _idx(20, 28, 28), "d/train-labels-idx1-ubyte": _idx(20),
                                     "d/t10k-images-idx3-ubyte": _idx(10, 28, 28), "d/t10k-labels-idx1-ubyte": _idx(10)}  # fmt: skip
    files.update({f"d/{name.replace('_', '-')}": content for name, content in changed.items()})
    return files


def _png(width: int, height: int, *, pixels: bool = True) -> bytes:
    """A grey PNG; without ``pixels`` only its header (enough for PIL to read the declared size)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    if pixels:
        body += chunk(b"IDAT", zlib.compress((b"\x00" + bytes(width)) * height))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def _images(extra: dict[str, bytes] | None = None) -> dict[str, str | bytes]:
    """An imagefolder in {tmp}/imgs with classes cats and dogs, one 8x8 image each, plus ``extra``."""
    return {"imgs/cats/1.png": _png(8, 8), "imgs/dogs/1.png": _png(8, 8),
            **{f"imgs/{k}": v for k, v in (extra or {}).items()}}  # fmt: skip


# ----------------------------------------------------------------------------- the table


def _trials_parquet(*without: str) -> bytes:
    """A run's trials table: trials 0 and 1 completed, trial 2 failed; ``without`` these columns."""
    import io

    import pandas as pd

    from autocompress.results import RESULT_COLUMNS

    frame = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE", "COMPLETE", "FAIL"], "feasible": [True, True, False],
                          "pareto": [True, False, False], **{c: [0.5, 0.4, None] for c in RESULT_COLUMNS}})  # fmt: skip
    buf = io.BytesIO()
    frame.drop(columns=list(without)).to_parquet(buf, index=False)
    return buf.getvalue()


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
    # --- every integer flag's range, checked before anything starts (issue 21)
    C("seed-negative", (*SEARCH, "--seed", "-1", "--run-dir", "{tmp}/run"), ("--seed must be between 0 and 4294967295; got -1",)),
    C("seed-too-large", (*SEARCH, "--seed", "4294967296", "--run-dir", "{tmp}/run"), ("--seed must be between 0 and 4294967295",)),
    C("subset-zero", (*SEARCH[:-1], "0", "--run-dir", "{tmp}/run"), ("--subset must be at least 1; got 0",)),
    C("eta-one", (*SEARCH, "--fidelity", "halving", "--eta", "1"), ("--eta must be at least 2; got 1",)),
    C("profile-passes-zero", ("profile", "--space", "tiny", "--passes", "0", "--out", "{tmp}/t"), ("--passes must be at least 1; got 0",)),
    C("profile-networks-negative", ("profile", "--space", "tiny", "--networks", "-1", "--out", "{tmp}/t"),
      ("--networks must be at least 0; got -1",)),
    C("profile-channels-zero", ("profile", "--space", "tiny", "--channels", "0", "--out", "{tmp}/t"),
      ("--channels must be between 1 and 4096; got 0",)),
    C("profile-classes-zero", ("profile", "--space", "tiny", "--classes", "0", "--out", "{tmp}/t"),
      ("--classes must be between 2 and 100000; got 0",)),
    C("validate-seed-negative", ("validate-latency", "-n", "3", "--space", "tiny", "--seed", "-1", "--out", "{tmp}/v"),
      ("--seed must be between 0 and 4294967295; got -1",)),
    C("validate-channels-zero", ("validate-latency", "-n", "3", "--space", "tiny", "--channels", "0", "--out", "{tmp}/v"),
      ("--channels must be between 1 and 4096",)),
    C("validate-classes-zero", ("validate-latency", "-n", "3", "--space", "tiny", "--classes", "0", "--out", "{tmp}/v"),
      ("--classes must be between 2 and 100000",)),
    C("estimate-table-channels-zero", ("estimate-table", "jetson-orin-nano", "--channels", "0"),
      ("--channels must be between 1 and 4096; got 0",), setup=_table(lambda f: None, TABLE.parent / "jetson-orin-nano")),
    C("export-trial-negative", ("export", "{tmp}/nope", "--trial", "-1"), ("--trial must be at least 0; got -1",)),
    C("max-size-no-unit", (*SEARCH, "--max-size", "500"), ("size must be", "did you mean '500KB'")),
    # --- search: the command line itself
    C("missing-budget", ("search", "--target", "cpu"), ("Missing option '--budget'", "autocompress search --help")),
    C("trials-not-a-number", (*SEARCH, "--trials", "abc"), ("Invalid value for '--trials'",)),
    C("trials-zero", (*SEARCH, "--trials", "0"), ("--trials must be at least 1",)),
    C("timeout-negative", (*SEARCH, "--timeout", "-5"), ("--timeout must be a positive number",)),
    C("accuracy-window-negative", (*SEARCH, "--accuracy-window", "-1", "--run-dir", "{tmp}/run"),
      ("--accuracy-window must be between 0 and 100 percentage points; got -1",)),
    C("unknown-sampler", (*SEARCH, "--sampler", "cmaes"), ("unknown sampler 'cmaes'", "tpe, nsga2, gp, random")),
    C("unknown-verb", ("serach",), ("No such command 'serach'",)),
    # --- search: targets
    C("unknown-target", ("search", "--target", "jetsn-orin", "--budget", "10ms"),
      ("unknown target 'jetsn-orin'", "did you mean", "jetson-orin-nano")),
    C("target-without-fp16", ("search", "--target", "cpu", "--budget", "5ms", "--space", "{tmp}/s.yaml"),
      ("uses fp16 but target x86-cpu-onnxruntime runs fp32, int8",),
      files={"s.yaml": tiny_with("precision: [fp32, int8]", "precision: [fp32, fp16]")}),
    # --- search: spaces
    C("space-missing", (*SEARCH[:5], "--space", "{tmp}/nope.yaml"), ("does not exist", "shipped spaces: fashion_mnist, mobilenet_rgb, tiny")),
    C("space-not-yaml", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("is not valid YAML at line 3",),
      files={"s.yaml": "name: s\ninput: {resolution: [28]\n"}),
    C("space-empty-file", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("must be a YAML mapping",), files={"s.yaml": ""}),
    C("space-binary", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("not a text file",), files={"s.yaml": b"\xff\xfe\x00\x81"}),
    C("space-folder", (*SEARCH[:5], "--space", "{tmp}"), ("is a folder, not a YAML file",)),
    C("space-fifo", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("search space {tmp}/s.yaml is a FIFO, not a YAML file",),
      setup=_fifo("s.yaml")),
    C("space-dev-zero", (*SEARCH[:5], "--space", "/dev/zero"), ("search space /dev/zero is a character device",)),
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
    C("space-duplicate-key", ("space", "{tmp}/s.yaml"),
      ("search space {tmp}/s.yaml is not valid YAML at line 11, column 3: found duplicate key 'width'",),
      files={"s.yaml": tiny_with("  width: [8]\n", "  width: [8]\n  width: [16]\n")}),
    C("space-nan-choice", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("compression.kd_alpha.1: Input should be a finite number",),
      files={"s.yaml": tiny_with("kd_alpha: [0.0, 0.5]", "kd_alpha: [0.0, .nan]")}),
    C("space-nan-expand", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("stages.0.expand.0: Input should be a finite number",),
      files={"s.yaml": tiny_with("expand: [2], stride: 2}", "expand: [.NaN], stride: 2}")}),
    C("space-infinite-epochs", (*SEARCH[:5], "--space", "{tmp}/s.yaml"), ("training.epochs: Input should be a finite number",),
      files={"s.yaml": tiny_with("epochs: 3", "epochs: .inf")}),
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
    # --- data sets whose files are wrong (issue 21): named, before a run directory exists
    C("data-imagefolder-bomb", (*SEARCH, "--dataset", "imagefolder:{tmp}/imgs", "--run-dir", "{tmp}/run"),
      ("{tmp}/imgs/dogs/2.png is too large to decode", "900000000 pixels", "decompression bomb"),
      files=_images({"dogs/2.png": _png(30000, 30000, pixels=False)})),
    C("data-imagefolder-bomb-warning", (*SEARCH, "--dataset", "imagefolder:{tmp}/imgs", "--run-dir", "{tmp}/run"),
      ("{tmp}/imgs/dogs/2.png is too large to decode", "100000000 pixels"),
      files=_images({"dogs/2.png": _png(10000, 10000, pixels=False)})),
    C("data-imagefolder-fifo", (*SEARCH, "--dataset", "imagefolder:{tmp}/imgs", "--run-dir", "{tmp}/run"),
      ("image {tmp}/imgs/dogs/2.png is a FIFO, not a regular file",), files=_images(), setup=_fifo("imgs/dogs/2.png")),
    C("data-imagefolder-not-an-image", (*SEARCH, "--dataset", "imagefolder:{tmp}/imgs", "--run-dir", "{tmp}/run"),
      ("cannot read image {tmp}/imgs/dogs/2.png: cannot identify image file",),
      files=_images({"dogs/2.png": _png(8, 8)[:40]})),
    C("data-imagefolder-empty-class", (*SEARCH, "--dataset", "imagefolder:{tmp}/imgs", "--run-dir", "{tmp}/run"),
      ("class folder(s) dogs hold no images",), files={"imgs/cats/1.png": _png(8, 8), "imgs/dogs/notes.txt": "x"}),
    C("data-imagefolder-no-path", (*SEARCH, "--dataset", "imagefolder:", "--run-dir", "{tmp}/run"),
      ("--dataset imagefolder:PATH needs a folder",)),
    C("data-idx-sizes-differ", (*SEARCH, "--data-dir", "{tmp}/d", "--run-dir", "{tmp}/run"),
      ("train-images-idx3-ubyte holds 28x28 images but t10k-images-idx3-ubyte 32x32",),
      files=_fashion(t10k_images_idx3_ubyte=_idx(10, 32, 32))),
    C("data-idx-label-count", (*SEARCH, "--data-dir", "{tmp}/d", "--run-dir", "{tmp}/run"),
      ("t10k-images-idx3-ubyte holds 10 images but t10k-labels-idx1-ubyte 12 labels",),
      files=_fashion(t10k_labels_idx1_ubyte=_idx(12))),
    C("data-idx-labels-are-images", (*SEARCH, "--data-dir", "{tmp}/d", "--run-dir", "{tmp}/run"),
      ("t10k-labels-idx1-ubyte holds arrays of shape (10, 28, 28), not labels",),
      files=_fashion(t10k_labels_idx1_ubyte=_idx(10, 28, 28))),
    C("data-idx-label-range", (*SEARCH, "--data-dir", "{tmp}/d", "--run-dir", "{tmp}/run"),
      ("train-labels-idx1-ubyte holds label 42; labels must be 0..9",), files=_fashion(train_labels_idx1_ubyte=_idx(20, fill=42))),
    C("data-idx-header-truncated", (*SEARCH, "--data-dir", "{tmp}/d", "--run-dir", "{tmp}/run"),
      ("t10k-labels-idx1-ubyte is truncated: its header declares 200 dimensions",),
      files=_fashion(t10k_labels_idx1_ubyte=bytes([0, 0, 8, 200]))),
    C("data-idx-fifo", (*SEARCH, "--data-dir", "{tmp}/d", "--run-dir", "{tmp}/run"),
      ("{tmp}/d/t10k-labels-idx1-ubyte is a FIFO, not a regular file",),
      files={k: v for k, v in _fashion().items() if "t10k-labels" not in k}, setup=_fifo("d/t10k-labels-idx1-ubyte")),
    C("data-dir-fifo", (*SEARCH, "--data-dir", "{tmp}/d", "--run-dir", "{tmp}/run"), ("--data-dir {tmp}/d is a FIFO, not a folder",),
      setup=_fifo("d")),
    C("data-dir-file", (*SEARCH, "--data-dir", "{tmp}/d", "--run-dir", "{tmp}/run"), ("--data-dir {tmp}/d is a file, not a folder",),
      files={"d": "x"}),
    # --- search: run directories
    C("resume-missing-run", (*SEARCH, "--resume", "--run-dir", "{tmp}/nothing"), ("cannot resume", "study.db is missing")),
    C("resume-other-search", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"),
      ("cannot resume", "started with budget_ms=7.0, not 5.0"),
      files={"run/config.yaml": run_config(budget_ms=7.0), "run/study.db": SQLITE_HEADER}),
    C("resume-other-subset", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"),
      ("cannot resume {tmp}/run: it was started with --subset 1500, not --subset 300", "leave it out"),
      files={"run/config.yaml": run_config(dataset={"spec": "fashion-mnist", "subset": 1500}), "run/study.db": SQLITE_HEADER}),
    C("resume-other-data", (*SEARCH, "--dataset", "digits", "--resume", "--run-dir", "{tmp}/run"),
      ("it was started with --dataset fashion-mnist, not --dataset digits",),
      files={"run/config.yaml": run_config(dataset={"spec": "fashion-mnist", "subset": 300}), "run/study.db": SQLITE_HEADER}),
    C("resume-other-version", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"), ("written by autocompress 0.0.1", "start a new run"),
      files={"run/config.yaml": run_config(autocompress_version="0.0.1"), "run/study.db": SQLITE_HEADER}),
    C("resume-not-autocompress", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"), ("not written by autocompress",),
      files={"run/config.yaml": "name: something else\n", "run/study.db": SQLITE_HEADER}),
    C("resume-config-garbage", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"), ("config.yaml is unreadable",),
      files={"run/config.yaml": "{: [\n", "run/study.db": SQLITE_HEADER}),
    C("resume-study-corrupt", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"), ("study.db is not an SQLite database",),
      files={"run/config.yaml": run_config(), "run/study.db": b"half a datab"}),
    C("run-dir-fifo", (*SEARCH, "--run-dir", "{tmp}/run"), ("run directory {tmp}/run is a FIFO, not a folder",), setup=_fifo("run")),
    C("run-dir-file", (*SEARCH, "--run-dir", "{tmp}/run"), ("run directory {tmp}/run is a file, not a folder",), files={"run": "x"}),
    C("resume-copy-without-study", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"),
      ("cannot resume {tmp}/run: its study.db is missing and its config.yaml is a copy of {tmp}/orig's",
       "pass --storage sqlite:///{tmp}/orig/study.db"), setup=_copied_run_without_study),
    C("resume-study-fifo", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"), ("{tmp}/run/study.db is a FIFO, not a regular file",),
      files={"run/config.yaml": run_config()}, setup=_fifo("run/study.db")),
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
    C("table-precision-without-rows", ("space", "tiny", "--target", "cpu"),
      ("target x86-cpu-onnxruntime has no blocks rows like mbconv", "int8 to interpolate from"),
      setup=_table(_edit("blocks.csv", _without_precision("int8")))),
    C("table-other-batch", ("space", "tiny", "--target", "cpu"), ("target x86-cpu-onnxruntime has no blocks rows like stem",),
      setup=_table(_edit("blocks.csv", lambda t: t.replace(",fp32,1,", ",fp32,4,").replace(",int8,1,", ",int8,4,")))),
    C("table-device-yaml-broken", (*SEARCH[:5],), ("device.yaml: not readable YAML",),
      setup=_table(_edit("device.yaml", lambda t: t + "\n  bad: [indent\n"))),
    C("table-device-yaml-schema", (*SEARCH[:5],), ("device.yaml: field precisions.0",),
      setup=_table(_edit("device.yaml", lambda t: t.replace("- fp32", "- fp64", 1)))),
    C("table-device-yaml-duplicate-key", ("space", "tiny", "--target", "cpu"),
      ("device.yaml: not readable YAML", "found duplicate key 'overhead_ms'"),
      setup=_table(_edit("device.yaml", lambda t: t + "overhead_ms: 5.0\n"))),
    C("table-device-yaml-nan", ("space", "tiny", "--target", "cpu"), ("device.yaml: field block_scale",),
      setup=_table(_edit("device.yaml", lambda t: t.replace("fp32: 0.9026", "fp32: .nan", 1)))),
    C("table-device-yaml-name-path", ("targets",), ("device.yaml: field name: String should match pattern",),
      setup=_table(_edit("device.yaml", lambda t: t.replace("name: x86-cpu-onnxruntime", "name: ../../x86", 1)))),
    C("targets-corrupt-table", ("targets",), ("device.yaml: field overhead_ms",),
      setup=_table(_edit("device.yaml", lambda t: t.replace("overhead_ms:", "overhead_ms: -1\nold_overhead_ms:", 1)))),
    # --- profile
    C("profile-name-is-an-alias", ("profile", "--space", "tiny", "--name", "cpu", "--out", "{tmp}/t"),
      ("--name cpu is an alias of target x86-cpu-onnxruntime; choose another name",)),
    C("profile-name-path", ("profile", "--space", "tiny", "--name", "../mine"),
      ("--name must be a plain name (letters, digits, '.', '_', '+', '-'; it names the table's folder); got '../mine'",),
      files={"tables/.keep": ""}, env={"AUTOCOMPRESS_TABLES": "{tmp}/tables"}),
    C("profile-runtime", ("profile", "--runtime", "tflite"), ("--runtime must be one of onnxruntime, openvino, tensorrt",)),
    C("profile-precision", ("profile", "--space", "tiny", "--precision", "fp16", "--out", "{tmp}/t"), ("runs fp32, int8; got fp16",)),
    C("profile-threads", ("profile", "--space", "tiny", "--threads", "0", "--out", "{tmp}/t"), ("--threads must be at least 1",)),
    C("profile-space-missing", ("profile", "--space", "{tmp}/x.yaml", "--out", "{tmp}/t"), ("does not exist",)),
    C("profile-out-fifo", ("profile", "--space", "tiny", "--out", "{tmp}/t"), ("cannot write to table folder {tmp}/t", "not a folder"),
      setup=_fifo("t")),
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
    C("storage-postgres-bad-port", (*SEARCH, "--storage", "postgresql://u:S3cret@127.0.0.1:notaport/db", "--run-dir", "{tmp}/run"),
      ("--storage postgresql://u:***@127.0.0.1:notaport/db is not a valid database URL",)),
    C("storage-redis", (*SEARCH, "--storage", "redis://localhost", "--run-dir", "{tmp}/run"),
      ("--storage must be postgresql://…, sqlite:///PATH or journal:PATH; got 'redis://localhost'",)),
    C("storage-journal-no-path", (*SEARCH, "--storage", "journal:", "--run-dir", "{tmp}/run"),
      ("--storage journal:PATH needs a file path",)),
    C("storage-sqlite-uppercase", (*SEARCH, "--storage", "SQLITE:///{tmp}/x.db", "--run-dir", "{tmp}/run"),
      ("(the scheme in lowercase)", "did you mean 'sqlite:///{tmp}/x.db'?")),
    C("storage-sqlite-no-path", (*SEARCH, "--storage", "sqlite://", "--run-dir", "{tmp}/run"),
      ("--storage sqlite:///PATH needs a file path",)),
    C("storage-sqlite-folder", (*SEARCH, "--storage", "sqlite:///{tmp}", "--run-dir", "{tmp}/run"),
      ("{tmp} is a folder, not a regular file",)),
    C("storage-journal-fifo", (*SEARCH, "--storage", "journal:{tmp}/study.log", "--run-dir", "{tmp}/run"),
      ("{tmp}/study.log is a FIFO, not a regular file",), setup=_fifo("study.log")),
    C("warm-start-fifo", (*SEARCH, "--warm-start", "{tmp}/old", "--run-dir", "{tmp}/run"),
      ("cannot warm-start from {tmp}/old: it is a FIFO, not a run directory",), setup=_fifo("old")),
    C("warm-start-pareto-fifo", (*SEARCH, "--warm-start", "{tmp}/old", "--run-dir", "{tmp}/run"),
      ("{tmp}/old/pareto.csv is a FIFO, not a regular file",), setup=_fifo("old/pareto.csv")),
    # --- bring your own model: its files (issue 21)
    C("weights-fifo", (*SEARCH, "--model", "{tmp}/m.py:build", "--weights", "{tmp}/w.pt", "--run-dir", "{tmp}/run"),
      ("--weights: file {tmp}/w.pt is a FIFO, not a regular file",), setup=_fifo("w.pt")),
    C("weights-dev-zero", (*SEARCH, "--model", "{tmp}/m.py:build", "--weights", "/dev/zero", "--run-dir", "{tmp}/run"),
      ("--weights: file /dev/zero is a character device, not a regular file",)),
    C("weights-folder", (*SEARCH, "--model", "{tmp}/m.py:build", "--weights", "{tmp}", "--run-dir", "{tmp}/run"),
      ("--weights: file {tmp} is a folder, not a regular file",)),
    C("model-space-fifo", (*SEARCH[:5], "--space", "{tmp}/s.yaml", "--model", "{tmp}/m.py:build", "--weights", "{tmp}/w.pt",
                           "--run-dir", "{tmp}/run"),
      ("search space {tmp}/s.yaml is a FIFO, not a YAML file",), files={"w.pt": b"x"}, setup=_fifo("s.yaml")),
    C("model-input-shape-huge", (*SEARCH, "--model", "{tmp}/m.py:build", "--weights", "{tmp}/w.pt", "--input-shape",
                                 "1,100000,100000", "--run-dir", "{tmp}/run"),
      ("--input-shape must be within 4096,1024,1024", "got '1,100000,100000'"), files={"w.pt": b"x"}),
    C("model-file-fifo", (*SEARCH, "--model", "{tmp}/m.py:build", "--weights", "{tmp}/w.pt", "--run-dir", "{tmp}/run"),
      ("--model: file {tmp}/m.py is a FIFO, not a regular file",), files={"w.pt": b"x"}, setup=_fifo("m.py")),
    C("backend-unknown", (*SEARCH, "--backend", "spark"), ("--backend must be local or ray; got 'spark'",)),
    C("eta-without-halving", (*SEARCH, "--eta", "4", "--run-dir", "{tmp}/run"),
      ("--eta sets the halving rate of --fidelity halving; this search runs --fidelity full",)),
    C("ray-address-unreachable", (*SEARCH, "--backend", "ray", "--address", "127.0.0.1:1", "--run-dir", "{tmp}/run"),
      ("cannot reach the Ray cluster at --address 127.0.0.1:1",)),
    C("workers-zero", (*SEARCH, "--backend", "ray", "--workers", "0"), ("--workers must be at least 1",)),
    C("warm-start-missing", (*SEARCH, "--warm-start", "{tmp}/nope"), ("cannot warm-start from {tmp}/nope: it does not exist",)),
    C("warm-start-no-pareto", (*SEARCH, "--warm-start", "{tmp}/run"), ("cannot warm-start from", "no pareto.csv"),
      files={"run/config.yaml": "x"}),
    # --- export and explore (issue 6; more in tests/test_export.py and tests/app/)
    C("export-missing-run", ("export", "{tmp}/nope", "--best", "--format", "onnx"), ("run directory", "does not exist")),
    C("export-unknown-format", ("export", "{tmp}/nope", "--best", "--format", "tflite"),
      ("unknown format 'tflite'; use one of onnx, openvino",)),
    C("explore-missing-run", ("explore", "{tmp}/nope"), ("run directory", "does not exist")),
    C("explore-bad-port", ("explore", "--port", "99999"), ("--port must be between 1 and 65535",)),
    C("export-run-fifo", ("export", "{tmp}/run", "--best"), ("run directory {tmp}/run is a FIFO, not a folder",), setup=_fifo("run")),
    C("export-config-fifo", ("export", "{tmp}/run", "--best"), ("{tmp}/run/config.yaml is a FIFO, not a regular file",),
      files={"run/trials.parquet": b"PAR1"}, setup=_fifo("run/config.yaml")),
    C("export-out-fifo", ("export", "{tmp}/nope", "--best", "--out", "{tmp}/out"), ("--out {tmp}/out is a FIFO, not a folder",),
      setup=_fifo("out")),
    C("export-out-under-a-file", ("export", "{tmp}/run", "--best", "--out", "{tmp}/f/sub"),
      ("cannot write to --out folder {tmp}/f/sub: {tmp}/f is not a folder",), files={"run/config.yaml": run_config(), "f": "x"}),
    C("export-trials-other-version", ("export", "{tmp}/run", "--best"),
      ("{tmp}/run/trials.parquet has no feasible, pareto columns (written by another autocompress version",),
      files={"run/config.yaml": run_config(), "run/trials.parquet": _trials_parquet("feasible", "pareto")}),
    C("finalize-trials-other-version", ("finalize", "{tmp}/run"), ("{tmp}/run/trials.parquet has no val_accuracy column",),
      files={"run/config.yaml": run_config(), "run/trials.parquet": _trials_parquet("val_accuracy")}),
    C("export-model-truncated", ("export", "{tmp}/run", "--trial", "0"),
      ("trial 0's model cannot be exported: {tmp}/run/models/trial_0000.onnx is not an ONNX model (DecodeError)",),
      files={"run/config.yaml": run_config(), "run/trials.parquet": _trials_parquet(),
             "run/models/trial_0000.onnx": b"\x08\x07\x12\x07pytorch\x1a\xff"}),
    C("export-model-empty", ("export", "{tmp}/run", "--trial", "1", "--out", "{tmp}/out"),
      ("trial 1's model cannot be exported: {tmp}/run/models/trial_0001.onnx is not an ONNX model (no graph nodes)",),
      files={"run/config.yaml": run_config(), "run/trials.parquet": _trials_parquet(), "run/models/trial_0001.onnx": b""}),
    C("explore-run-fifo", ("explore", "{tmp}/run"), ("run directory {tmp}/run is a FIFO, not a folder",), setup=_fifo("run")),
    C("explore-trials-fifo", ("explore", "{tmp}/run"), ("{tmp}/run/trials.parquet is a FIFO, not a regular file",),
      files={"run/config.yaml": run_config()}, setup=_fifo("run/trials.parquet")),
    # --- finalize (issue 19; the phase itself: tests/test_finalize.py)
    C("finalize-missing-run", ("finalize", "{tmp}/nope"), ("run directory {tmp}/nope does not exist",)),
    C("finalize-not-a-run", ("finalize", "{tmp}/d"), ("{tmp}/d is not an autocompress run (no config.yaml)",),
      files={"d/notes.txt": "x"}),
    C("finalize-unknown-trial", ("finalize", "{tmp}/run", "--trials", "1,7"),
      ("the run has no completed trial 7 (it has trials 0-2, 2 completed); nothing was finalized",),
      files={"run/config.yaml": run_config(), "run/trials.parquet": _trials_parquet()}),
    C("finalize-failed-trial", ("finalize", "{tmp}/run", "--trials", "2"), ("the run has no completed trial 2",),
      files={"run/config.yaml": run_config(), "run/trials.parquet": _trials_parquet()}),
    C("finalize-trials-words", ("finalize", "{tmp}/run", "--trials", "best"),
      ("--trials takes trial numbers separated by commas, e.g. 3,7; got 'best'",)),
    C("finalize-top-zero", ("finalize", "{tmp}/nope", "--top", "0"), ("--top must be at least 1; got 0",)),
    C("export-config-wrong-type", ("export", "{tmp}/run", "--best"),
      ("{tmp}/run/config.yaml: budget_ms must be a number >= 0, got 'fast' (edited by hand?",),
      files={"run/config.yaml": run_config(budget_ms="fast"), "run/trials.parquet": _trials_parquet()}),
    C("finalize-config-wrong-type", ("finalize", "{tmp}/run"), ("{tmp}/run/config.yaml: target_estimated must be true or false",),
      files={"run/config.yaml": run_config(target_estimated="no"), "run/trials.parquet": _trials_parquet()}),
    C("resume-config-wrong-type", (*SEARCH, "--resume", "--run-dir", "{tmp}/run"),
      ("{tmp}/run/config.yaml: dataset must be a mapping, got 5",),
      files={"run/config.yaml": run_config(dataset=5), "run/study.db": SQLITE_HEADER}),
    C("finalize-read-only", ("finalize", "{tmp}/run"), ("cannot write to run directory {tmp}/run: Read-only file system",),
      setup=_readonly_finished_run),
    C("finalize-run-fifo", ("finalize", "{tmp}/run"), ("run directory {tmp}/run is a FIFO, not a folder",), setup=_fifo("run")),
    C("search-finalize-negative", (*SEARCH, "--finalize", "-1"), ("--finalize must be at least 0; got -1",)),
    C("data-download-dest-fifo", ("data", "download", "--url", "http://127.0.0.1:9/", "--dest", "{tmp}/dl"),
      ("--dest {tmp}/dl is a FIFO, not a folder",), setup=_fifo("dl")),
    C("data-check-fifo", ("data", "check", "--data-dir", "{tmp}/d"), ("--data-dir {tmp}/d is a FIFO, not a folder",), setup=_fifo("d")),
    # --- latency of an ONNX file (issue 17)
    C("latency-missing-file", ("latency", "{tmp}/nope.onnx", "--target", "cpu"), ("model file {tmp}/nope.onnx does not exist",)),
    C("latency-not-onnx", ("latency", "{tmp}/m.onnx", "--target", "cpu"), ("{tmp}/m.onnx is not an ONNX model",),
      files={"m.onnx": "conv,relu\n"}),
    C("latency-folder", ("latency", "{tmp}/m", "--target", "cpu"), ("model file {tmp}/m is a folder, not a regular file",),
      files={"m/x": "x"}),
    C("latency-fifo", ("latency", "{tmp}/m.onnx", "--target", "cpu"), ("model file {tmp}/m.onnx is a FIFO, not a regular file",),
      setup=_fifo("m.onnx")),
    C("latency-unknown-target", ("latency", "{tmp}/m.onnx", "--target", "jetson-nanoo"),
      ("unknown target 'jetson-nanoo'", "did you mean jetson-nano"), files={"m.onnx": b"x"}),
    C("latency-precision-unknown", ("latency", "{tmp}/m.onnx", "--target", "cpu", "--precision", "bf16"),
      ("--precision must be one of fp32, fp16, int8, mixed; got 'bf16'",), files={"m.onnx": b"x"}),
    C("latency-precision-not-in-table", ("latency", "{tmp}/m.onnx", "--target", "cpu", "--precision", "fp16"),
      ("target x86-cpu-onnxruntime has no fp16 table rows (it runs fp32, int8)",), files={"m.onnx": b"x"}),
    C("budget-on-unknown", (*SEARCH, "--budget-on", "p90"), ("--budget-on must be point or upper; got 'p90'",)),
    C("budget-on-upper-no-band", (*SEARCH, "--budget-on", "upper", "--run-dir", "{tmp}/run"),
      ("--budget-on upper needs the held-out error band of target x86-cpu-onnxruntime", "no held-out error on record"),
      setup=_table(_without_band)),
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
    "latency": ("latency-not-onnx", "BadInputError"),
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


def test_budget_below_every_candidate_is_refused_before_training(micro: Path, tmp_path: Path) -> None:
    # every candidate of the micro space is priced: a budget none meets is refused, nothing trained
    proc = _micro_search(micro, tmp_path / "run", budget="1us", trials=2)
    _observe("budget-infeasible", proc, tmp_path)
    (line,) = stderr_lines(proc)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no candidate of this space is predicted under 0.001 ms" in line and "raise --budget to at least" in line
    assert not (tmp_path / "run").exists()


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


def test_every_integer_flag_has_a_range() -> None:
    """Each command checks all its integer flags (cli.INT_RANGES) before it starts: a flag added
    without a range fails here, not as an internal error deep in a library."""
    import typer

    from autocompress import cli

    def commands(group: Any, prefix: str = "") -> dict[str, Any]:
        found = {}
        for name, cmd in group.commands.items():
            found.update(commands(cmd, f"{prefix}{name} ") if hasattr(cmd, "commands") else {prefix + name: cmd})
        return found

    def is_int(param: Any) -> bool:  # typer >= 0.2x describes its own parameters; click's otherwise
        td = getattr(param, "type_descriptor", None)
        return td.annotation is int if td is not None else type(param.type).__name__ in ("IntParamType", "IntRange")

    found = commands(typer.main.get_command(cli.app))
    assert {"search", "profile", "validate-latency", "export", "explore", "data check"} <= set(found)
    for name, cmd in found.items():
        ints = {p.name for p in cmd.params if is_int(p)}
        assert ints == set(cli.INT_RANGES.get(name, {})), (name, ints)


def test_check_storage_spec_refuses_without_creating_anything(tmp_path: Path) -> None:
    """The check the search library calls before a run directory exists: syntax, a stat of the
    named file (a FIFO would block SQLite or the journal) and an import of the database's driver
    (mysql has none installed here); nothing is created or connected to."""
    from autocompress.exceptions import BadInputError
    from autocompress.search.storage import check_storage_spec

    os.mkfifo(tmp_path / "fifo")
    for spec in (None, "", f"sqlite:///{tmp_path}/new.db", f"journal:{tmp_path}/new.log", "postgresql://u:pw@h/db",
                 "postgresql+psycopg2://h/db"):  # fmt: skip
        check_storage_spec(spec)
    for spec, fragment in [
        ("redis://h", "must be postgresql://…, sqlite:///PATH or journal:PATH; got 'redis://h'"),
        ("mysql://u:secret@h/db", "cannot open storage mysql://u:***@h/db: its database driver is not installed"),
        ("mysql+nodriver://h/db", "cannot open storage mysql+nodriver://h/db: Can't load plugin"),
        ("journal:", "journal:PATH needs a file path"),
        ("journal:  ", "journal:PATH needs a file path"),
        ("sqlite://", "sqlite:///PATH needs a file path"),
        ("SQLITE:///x.db", "did you mean 'sqlite:///x.db'?"),
        ("Journal:x.log", "did you mean 'journal:x.log'?"),
        ("PostgreSQL://u:secret@h/db", "did you mean 'postgresql://u:***@h/db'?"),
        (f"sqlite:///{tmp_path}", "is a folder, not a regular file"),
        (f"journal:{tmp_path}/fifo", "is a FIFO, not a regular file"),
        ("study.db", "got 'study.db'"),
    ]:
        with pytest.raises(BadInputError, match=re.escape(fragment)) as info:
            check_storage_spec(spec)
        assert "secret" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_path_checks_never_open_what_they_refuse(tmp_path: Path) -> None:
    from autocompress._io import check_folder, check_not_special, check_regular_file, path_kind
    from autocompress.exceptions import BadInputError, ModelError

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "to-fifo").symlink_to(tmp_path / "fifo")
    kinds = {n: path_kind(tmp_path / n) for n in ("fifo", "f.txt", "dangling", "to-fifo", "nowhere")}
    assert kinds == {"fifo": "a FIFO", "f.txt": "a file", "dangling": None, "to-fifo": "a FIFO", "nowhere": None}
    assert path_kind("/dev/zero") == "a character device" and path_kind(tmp_path) == "a folder"
    assert check_regular_file(tmp_path / "f.txt", "x") == tmp_path / "f.txt"
    for path, fragment in [(tmp_path / "to-fifo", "is a FIFO, not a regular file"), (tmp_path, "is a folder"),
                           ("/dev/zero", "is a character device"), (tmp_path / "nowhere", "does not exist")]:  # fmt: skip
        with pytest.raises(ModelError, match=re.escape(f"--weights {path} {fragment}")):
            check_regular_file(path, "--weights", ModelError)
    with pytest.raises(BadInputError, match="is a file, not a folder"):
        check_folder(tmp_path / "f.txt", "--data-dir")
    check_not_special(tmp_path / "nowhere", "x")
    check_not_special(tmp_path, "x")
    with pytest.raises(BadInputError, match="is a FIFO"):
        check_not_special(tmp_path / "fifo", "x")


def test_a_run_config_without_its_space_says_so() -> None:
    """A run's config.yaml whose space was removed or edited: the message names the config, not
    a search space the user never passed."""
    from autocompress.exceptions import SpaceError
    from autocompress.problems.supernet import SupernetDescriber

    with pytest.raises(SpaceError, match=re.escape("the run's config.yaml: space must be a YAML mapping")):
        SupernetDescriber({"kind": "supernet"})
    space = yaml.safe_load(TINY)
    space["stages"][0]["width"] = ["x"]
    with pytest.raises(SpaceError, match=re.escape("the run's config.yaml: space: stages.0.width.0: Input should be")):
        SupernetDescriber({"kind": "supernet", "space": space})


def test_suggested_commands_quote_paths_with_spaces(tmp_path: Path) -> None:
    """The next commands a run's report gives are pasted into a shell: a run directory or space
    file with a space in its name must stay one argument."""
    from autocompress.results import _next_search
    from autocompress.space import space_arg

    run_dir = tmp_path / "my runs" / "run ü"
    space = tmp_path / "my space.yaml"
    config = yaml.safe_load(run_config(space_path=str(space)))
    (line,) = [ln for ln in _next_search(run_dir, config) if "autocompress search" in ln]
    assert f"--space '{space}' --run-dir '{run_dir}' --resume" in line, line
    assert space_arg(TINY_PATH) == "tiny" and space_arg(space) == f"'{space}'"
    model = {**config, "kind": "model", "model": {"spec": f"{tmp_path}/my net.py:build", "weights": f"{tmp_path}/w 1.pt",
                                                  "input_shape": [1, 28, 28]}}  # fmt: skip
    (line,) = [ln for ln in _next_search(run_dir, model) if "autocompress search" in ln]
    assert f"--model '{tmp_path}/my net.py:build' --weights '{tmp_path}/w 1.pt'" in line, line


def test_the_profile_command_suggested_for_a_space_file_names_the_file(tmp_path: Path) -> None:
    """A table from another machine suggests profiling the space here: a space file is passed by
    its path (its name alone is no shipped space: 'does not exist')."""
    from autocompress.hardware.host_fit import profile_command
    from autocompress.hardware.lut import load_device

    device = load_device(TABLE / "device.yaml")
    path = tmp_path / "my spaces" / "s.yaml"
    path.parent.mkdir()
    path.write_text(TINY.replace("name: tiny", "name: custom"))
    assert profile_command(device, load_space(path)).startswith(f"autocompress profile --space '{path}' --runtime")
    assert profile_command(device, load_space("tiny")).startswith("autocompress profile --space tiny --runtime")
