"""Ship a trial: copy its deployed ONNX file (or convert it to OpenVINO IR), re-measure the
exported file's test accuracy, time it on this machine, and write a model card.

    out/
      trial_NNNN.onnx                  (--format onnx), or
      trial_NNNN.xml + trial_NNNN.bin  (--format openvino)
      model_card.md, model_card.json

Everything is written into a temporary folder beside ``out`` and renamed into place only once
the exported file's accuracy matched the trials table, so a failed export leaves nothing.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autocompress import __version__
from autocompress._io import as_if_created, ensure_writable_dir, file_sha256
from autocompress.exceptions import AutoCompressError, BadInputError, RunDirError, WriteError
from autocompress.hardware.interval import NO_BAND, row_interval
from autocompress.results import interval_line, load_run
from autocompress.units import format_bytes, format_ms

FORMATS = ("onnx", "openvino")
RUNTIME_OF = {"onnx": "onnxruntime", "openvino": "openvino"}
# An export run by the runtime the search measured it with (the trial's ``accuracy_runtime``:
# ONNX Runtime, or OpenVINO for OpenVINO targets) must agree exactly. The other runtime runs the
# same graph with its own int8 kernels, which may round a few borderline samples differently;
# more than this share of the test split is a real difference.
CROSS_RUNTIME_TOLERANCE = 0.005
# what an export folder holds: ``--overwrite`` replaces a folder of these only (never a run, or
# a folder of the user's that happens to be named)
EXPORTED_NAME = re.compile(r"model_card\.(md|json)|trial_\d{4,}\.(onnx|xml|bin)")


class ExportMismatchError(AutoCompressError):
    """The exported file's accuracy is not the one the trials table recorded."""


@dataclass(frozen=True)
class Export:
    out_dir: Path
    files: tuple[Path, ...]  # the model's files (the .xml first for OpenVINO)
    card: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.files[0]


def trial_model(run_dir: Path, row: pd.Series) -> Path:
    """The deployed file of a completed trial (found in the run's models/ even if the run moved)."""
    number = int(row["number"])
    finalized = row.get("final_state") == "finalized"  # the finalize phase's file is the deployed one
    local = run_dir / "models" / f"{'final' if finalized else 'trial'}_{number:04d}.onnx"
    if local.is_file():
        return local
    recorded = row.get("model_path")
    if isinstance(recorded, str) and recorded:
        # a duplicate trial's file is its twin's: look for it in this run's models/ first (the run may have moved)
        for path in (run_dir / "models" / Path(recorded).name, Path(recorded)):
            if path.is_file():
                return path
    raise RunDirError(f"trial {number}'s model is missing ({local} does not exist)")


def select_trial(
    trials: pd.DataFrame, *, trial: int | None = None, best: bool = False, budget_ms: float | None = None,
    budget_on: str = "point",
) -> pd.Series:
    """One completed trial: by number, or the most accurate (validation accuracy, as the search
    chose) feasible Pareto trial, optionally within a tighter ``budget_ms``, which bounds what the
    run's budget bounded (``budget_on``: the predicted latency, or the upper end of its interval)."""
    if (trial is None) == (not best):
        raise BadInputError("pass exactly one of --trial N or --best")
    if budget_ms is not None and not best:
        raise BadInputError("--budget selects among the Pareto set; use it with --best")
    if trial is not None:
        rows = trials[trials["number"] == trial]
        if rows.empty:
            numbers = trials["number"]
            have = f"trials {int(numbers.min())}-{int(numbers.max())}" if len(numbers) else "no trials"
            raise BadInputError(f"the run has no trial {trial} (it has {have})")
        row = rows.iloc[0]
        if row["state"] != "COMPLETE":
            why = row.get("error")
            why = f": {why}" if isinstance(why, str) and why else ""
            raise BadInputError(f"trial {trial} did not complete (state {row['state']}{why}); nothing to export")
        return row
    done = trials[(trials["state"] == "COMPLETE") & trials["feasible"].astype(bool) & trials["pareto"].astype(bool)]
    upper = budget_on == "upper"
    if budget_ms is not None:
        bound = done["latency_ms"]
        if upper and "latency_hi_ms" in done:
            bound = pd.to_numeric(done["latency_hi_ms"], errors="coerce").fillna(bound)
        done = done[bound <= budget_ms]
    if done.empty:
        within = "" if budget_ms is None else (
            f" within {format_ms(budget_ms)}" + (" (at the upper end of its latency interval, as the run's budget)"
                                                 if upper else ""))  # fmt: skip
        raise BadInputError(f"no feasible Pareto trial{within} in this run; nothing to export")
    return done.sort_values(["val_accuracy", "latency_ms"], ascending=[False, True]).iloc[0]


def export_trial(
    run_dir: str | Path,
    *,
    out_dir: str | Path,
    fmt: str = "onnx",
    trial: int | None = None,
    best: bool = False,
    budget_ms: float | None = None,
    overwrite: bool = False,
    latency_reps: int = 100,
) -> Export:
    """Export one trial of a run (see the module docstring).

    Raises:
        BadInputError: unknown format, missing/failed trial, existing ``out_dir``.
        RunDirError: missing or corrupt run directory.
        ExportMismatchError: the exported file's test accuracy differs from the trials table.
    """
    if fmt not in FORMATS:
        raise BadInputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    out_dir = Path(out_dir)
    config, trials = load_run(run_dir)
    row = select_trial(trials, trial=trial, best=best, budget_ms=budget_ms, budget_on=config.get("budget_on", "point"))
    source = trial_model(run_dir, row)
    _check_readable(source, int(row["number"]))
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BadInputError(f"{out_dir} already exists and is not empty; pass --overwrite or another --out")
    names = sorted(p.name for p in out_dir.iterdir()) if overwrite and out_dir.is_dir() else []
    if names and ("model_card.json" not in names or any(not EXPORTED_NAME.fullmatch(n) for n in names)):
        others = [n for n in names if not EXPORTED_NAME.fullmatch(n)] or names
        raise BadInputError(f"--overwrite replaces an earlier export only; {out_dir} is not one (it holds "
                            f"{', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); pick another --out")  # fmt: skip
    ensure_writable_dir(out_dir, "output folder")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
        as_if_created(tmp, folder=True)
    except OSError as exc:
        raise WriteError(f"cannot write to output folder {out_dir}: {exc.strerror or exc}") from None
    try:
        stem = f"trial_{int(row['number']):04d}"
        files = _write_model(source, tmp, stem, fmt)
        card = model_card(run_dir, config, row, files, fmt, latency_reps=latency_reps)
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2, default=_jsonable) + "\n")
        (tmp / "model_card.md").write_text(render_card(card))
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Export(out_dir, tuple(out_dir / f.name for f in files), card)


def _check_readable(source: Path, number: int) -> None:
    """A trial's file that no longer reads as ONNX (truncated, emptied, overwritten) is one line
    naming it, before anything is written (not the runtime's error from inside the export)."""
    from autocompress.hardware.file_latency import read_model

    try:
        read_model(source)
    except BadInputError as exc:
        raise RunDirError(f"trial {number}'s model cannot be exported: {exc}; export another trial, or run "
                          "the search again") from None  # fmt: skip


def _write_model(source: Path, folder: Path, stem: str, fmt: str) -> list[Path]:
    if fmt == "onnx":
        dst = folder / f"{stem}.onnx"
        shutil.copyfile(source, dst)
        return [dst]
    from autocompress.runtime import _openvino

    ov = _openvino()
    # convert from the ONNX file: its QuantizeLinear/DequantizeLinear pairs become OpenVINO
    # FakeQuantize nodes, so int8 stages stay int8; keep fp32 weights as they are (no fp16
    # compression, which would change the predictions)
    model = ov.convert_model(str(source))
    xml = folder / f"{stem}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return [xml, xml.with_suffix(".bin")]


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, out_dir)


def evaluate_exported(
    files: list[Path], fmt: str, config: dict[str, Any], resolution: int
) -> tuple[float, np.ndarray, int]:
    """Test accuracy of the exported file, with the runtime it is meant for, on the run's own
    test split (same data set, subset and seed). Returns (accuracy, predictions, n)."""
    from autocompress.data import load_dataset
    from autocompress.runtime import runner

    ds = config.get("dataset") or {}
    data = load_dataset(ds.get("spec") or ds.get("name"), subset=ds.get("subset"), seed=int(config.get("seed", 0)))
    if ds.get("fingerprint") and data.fingerprint != ds["fingerprint"]:
        raise ExportMismatchError(
            f"the data set found here is not the one the run used (fingerprint {data.fingerprint} "
            f"!= {ds['fingerprint']}); cannot check the exported file's accuracy"
        )
    x, y = data.split("test", resolution)
    run = runner(files[0], runtime=RUNTIME_OF[fmt], threads=os.cpu_count() or 1)
    xs = x.numpy().astype(np.float32, copy=False)
    preds = np.concatenate([run(xs[i : i + 500]).argmax(1) for i in range(0, len(xs), 500)])
    return float((preds == y.numpy()).mean()), preds, len(y)


def recorded_runtime(row: pd.Series) -> str:
    """The runtime the search measured a trial's accuracy with (runs before it was recorded:
    ONNX Runtime)."""
    value = row.get("accuracy_runtime")
    return value if isinstance(value, str) and value else "onnxruntime"


def model_card(
    run_dir: Path, config: dict[str, Any], row: pd.Series, files: list[Path], fmt: str, *, latency_reps: int = 100
) -> dict[str, Any]:
    """Measure the exported file and describe it. Raises ExportMismatchError when its test
    accuracy is not the trials table's."""
    from autocompress.problems import describer
    from autocompress.runtime import measure_latency, runtime_version

    number = int(row["number"])
    runs = describer(config)
    cand = runs.row_candidate(row)
    about = runs.describe(cand)
    channels, height, width = about["input_shape"]
    accuracy, _, n_test = evaluate_exported(files, fmt, config, height)
    recorded = float(row["test_accuracy"])
    scored_with = recorded_runtime(row)
    tol = 0.0 if RUNTIME_OF[fmt] == scored_with else CROSS_RUNTIME_TOLERANCE
    if abs(accuracy - recorded) > tol + 1e-12:
        raise ExportMismatchError(
            f"exported trial {number} ({fmt}) scores {100 * accuracy:.2f}% on the test split, but the "
            f"trials table records {100 * recorded:.2f}% (allowed difference {100 * tol:.1f} points); "
            f"nothing was written"
        )
    ds = config.get("dataset") or {}
    rt = RUNTIME_OF[fmt]
    timing = measure_latency([files[0]], shape=(1, channels, height, width), runtime=rt,
                             threads=1, reps=latency_reps)[0]  # fmt: skip
    energy = row.get("energy_mj")
    estimated = bool(config.get("target_estimated"))
    return {
        "autocompress_version": __version__,
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": {"dir": str(run_dir.resolve()), "name": run_dir.resolve().name, "trial": number,
                "seeded": _py(row.get("seeded")), "pareto": bool(row.get("pareto")),
                "feasible": bool(row.get("feasible"))},  # fmt: skip
        "format": fmt,
        "files": {f.name: {"bytes": f.stat().st_size, "sha256": file_sha256(f)} for f in files},
        "size_bytes": sum(f.stat().st_size for f in files),
        "dataset": {
            "name": ds.get("name"),
            "classes": ds.get("classes"),
            "split_sizes": ds.get("split_sizes"),
            "subset": ds.get("subset"),
            "input": {"shape": ["batch", channels, height, width], "dtype": "float32",
                      "range": "[0, 1] pixels (normalisation is inside the model)", "name": "input",
                      "resize": _resize_note(ds, height, width)},
            "output": {"name": "logits", "shape": ["batch", len(ds.get("classes") or [])]},
        },  # fmt: skip
        "accuracy": {
            "test": accuracy,
            "test_samples": n_test,
            "measured_with": f"{rt} {runtime_version(rt)} on the exported file",
            "test_in_trials_table": recorded,
            "scored_with": scored_with,
            "allowed_difference": tol,
            "val_in_trials_table": float(row["val_accuracy"]),
        },
        "predicted": {
            "target": config.get("target"),
            "latency_ms": float(row["latency_ms"]),
            "energy_mj": None if energy is None or (isinstance(energy, float) and math.isnan(energy)) else float(energy),
            "source": "estimated" if estimated else "measured",
            "source_label": config.get("target_label"),
            "budget_ms": config.get("budget_ms"),
            "budget_on": config.get("budget_on", "point"),
            "family_note": config.get("latency_family_note"),
            # the range the prediction stands for (None: no held-out error on record, or a run
            # written before intervals existed) and what it rests on
            "latency_interval_ms": list(iv) if (iv := row_interval(row)) else None,
            "latency_interval": interval_line(config, row.get("latency_band")),
        },
        "measured_here": {
            "runtime": rt,
            "runtime_version": runtime_version(rt),
            "cpu": _cpu_name(),
            "threads": 1,
            "batch": 1,
            "median_ms": timing.median_ms,
            "p10_ms": timing.p10_ms,
            "p90_ms": timing.p90_ms,
            "reps": timing.reps,
        },
        "params": int(row["params"]),
        "macs": int(row["macs"]),
        "candidate": {"description": row.get("candidate"), "choices": about["choices"], "kd": about["kd"],
                      "problem": about["kind"], "parts": about["parts"]},  # fmt: skip
        "search": {"space": (config.get("space") or {}).get("name"), "sampler": config.get("sampler"),
                   "seed": config.get("seed")},  # fmt: skip
        **({"tensorrt": {**tensorrt_card(files[0]), "target_runtime": config.get("target_runtime")}}
           if fmt == "onnx" else {}),  # fmt: skip
        "finalize": _finalize_entry(row),
    }


def tensorrt_card(path: Path) -> dict[str, Any]:
    """How to measure the exported ONNX file on an NVIDIA device: the ``trtexec`` command (the
    file's precision flags, input name and shape), and why it would not parse when its int8
    activations are asymmetric."""
    from autocompress.runtime_tensorrt import nonzero_zero_points, trtexec_command

    asym = nonzero_zero_points(path)
    return {"trtexec": trtexec_command(path),
            "note": (f"{asym} quantize/dequantize nodes of this file have non-zero zero points, which TensorRT's "
                     "ONNX parser rejects: search with a TensorRT target (e.g. --target jetson), whose int8 "
                     "files use zero-point-0 activations, to deploy this int8 network there") if asym else None}  # fmt: skip


def _finalize_entry(row: pd.Series) -> dict[str, Any] | None:
    """What the finalize phase did to this trial (None: it was not finalized)."""
    state = row.get("final_state")
    if not isinstance(state, str):
        return None
    return {"state": state, "deployed": "finalized" if state == "finalized" else "search",
            "schedule": _py(row.get("final_schedule")), "finalized_at": _py(row.get("finalized_at")),
            "search_val_accuracy": _py(row.get("search_val_accuracy")),
            "search_test_accuracy": _py(row.get("search_test_accuracy")),
            "final_val_accuracy": _py(row.get("final_val_accuracy")),
            "final_test_accuracy": _py(row.get("final_test_accuracy"))}  # fmt: skip


def _resize_note(ds: dict[str, Any], height: int, width: int) -> str | None:
    """How the run's images were brought to the model's input size (None: they were that size)."""
    try:
        size = int(ds.get("image_size"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        size = None
    folder = str(ds.get("spec") or ds.get("name") or "").startswith("imagefolder")
    loaded = (f" (each image of the folder was first cut to its centre square and scaled to {size}x{size} with "
              "PIL's bilinear filter)" if folder and size else "")  # fmt: skip
    if size == height == width:
        return (f"each image of the folder was cut to its centre square and scaled to {size}x{size} with PIL's "
                "bilinear filter; prepare yours the same way") if loaded else None  # fmt: skip
    was = f"{size}x{size}" if size else "the data set's"
    return (f"the run's {was} images{loaded} were resized to {height}x{width}: bilinear with antialiasing, clamped "
            f"to [0, 1] (torch.nn.functional.interpolate(x, size=({height}, {width}), mode='bilinear', antialias=True)); "
            "prepare yours the same way, another filter scores lower")  # fmt: skip


def _budget_cell(card: dict[str, Any]) -> str:
    """The card's budget row: the run's budget, what it bounds, and whether this trial met it."""
    p = card["predicted"]
    if p.get("budget_ms") is None:
        return "n/a"
    upper = p.get("budget_on") == "upper" and p.get("latency_interval_ms")
    bound = float(p["latency_interval_ms"][1]) if upper else float(p["latency_ms"])
    what = "the upper end of the latency interval" if upper else "the predicted latency"
    met = "met" if bound <= float(p["budget_ms"]) else f"**NOT met** ({format_ms(bound)}): this trial is over the run's budget"
    return f"{format_ms(float(p['budget_ms']))} on {what}: {met}"


def usage_snippet(card: dict[str, Any]) -> str:
    shape = card["dataset"]["input"]["shape"]
    c, h, w = shape[1], shape[2], shape[3]
    model = next(iter(card["files"]))
    if card["format"] == "openvino":
        return (
            "import numpy as np\nimport openvino as ov\n\n"
            f'compiled = ov.Core().compile_model("{model}", "CPU")\n'
            f"x = np.random.rand(1, {c}, {h}, {w}).astype(np.float32)  # pixels in [0, 1]\n"
            "logits = compiled(x)[0]\nprint(logits.argmax(1))\n"
        )
    return (
        "import numpy as np\nimport onnxruntime as ort\n\n"
        f'sess = ort.InferenceSession("{model}", providers=["CPUExecutionProvider"])\n'
        f"x = np.random.rand(1, {c}, {h}, {w}).astype(np.float32)  # pixels in [0, 1]\n"
        'logits = sess.run(["logits"], {"input": x})[0]\nprint(logits.argmax(1))\n'
    )


def render_card(card: dict[str, Any]) -> str:
    p, m, a, d = card["predicted"], card["measured_here"], card["accuracy"], card["dataset"]
    est = p["source"] == "estimated"
    tag = " (ESTIMATED, not measured on the device)" if est else " (measured table)"
    energy = "n/a" if p["energy_mj"] is None else f"{p['energy_mj']:.3f} mJ"
    kd = card["candidate"]["kd"]
    classes = d.get("classes") or []
    lines = [
        f"# Model card: {card['run']['name']} trial {card['run']['trial']}",
        "",
        f"`{card['candidate']['description']}`",
        "",
        "| | |",
        "|---|---|",
        f"| format | {card['format']} ({', '.join(card['files'])}) |",
        f"| dataset | {d['name']} ({len(classes)} classes; test split {a['test_samples']} images"
        f"{', subset ' + str(d['subset']) if d.get('subset') else ''}) |",
        f"| test accuracy | **{100 * a['test']:.2f}%** — {a['measured_with']} |",
        f"| test accuracy in the trials table | {100 * a['test_in_trials_table']:.2f}% ({a['scored_with']} on the "
        f"file the run deployed; allowed difference {100 * a['allowed_difference']:.1f} points) |",
        f"| {_val_cell(a, card.get('finalize'))} |",
        f"| predicted latency on {p['target']} | {format_ms(p['latency_ms'])}{tag} |",
        f"| predicted energy on {p['target']} | {energy}{' (ESTIMATED)' if est else ''} |",
        f"| latency interval | {_interval_cell(p)} |",
        *([f"| calibration coverage | **{p['family_note']}** |"] if p.get("family_note") else []),
        f"| the run's budget | {_budget_cell(card)} |",
        f"| latency source | {p['source_label']} |",
        f"| measured latency here | {format_ms(m['median_ms'])} median (p10 {format_ms(m['p10_ms'])}, "
        f"p90 {format_ms(m['p90_ms'])}; {m['runtime']} {m['runtime_version']}, {m['cpu']}, "
        f"{m['threads']} thread, batch 1, {m['reps']} runs) |",
        f"| size | {format_bytes(card['size_bytes'])} ({card['size_bytes']:,} bytes) |",
        f"| parameters / MACs | {card['params']:,} / {card['macs']:,} |",
        f"| distillation | alpha {kd['alpha']:g}, temperature {kd['temperature']:g}, "
        f"{kd['finetune_steps']} fine-tune steps |",
        *_finalize_rows(card.get("finalize")),
        "",
        "## Input and output",
        "",
        f"`input`: float32 {d['input']['shape']}, {d['input']['range']}. "
        f"`logits`: {d['output']['shape']}" + (f", classes {', '.join(map(str, classes))}." if classes else "."),
        *([f"Input size: {d['input']['resize']}."] if d["input"].get("resize") else []),
        "",
        "## Run it",
        "",
        "```python",
        usage_snippet(card).rstrip(),
        "```",
        "",
        *([] if "tensorrt" not in card else [
            *(["## Measure it on the device (TensorRT)", "",
               "On the board (or any NVIDIA GPU with TensorRT), in the folder holding the file:", ""]
              if card["tensorrt"].get("target_runtime") in (None, "tensorrt") else
              ["## On an NVIDIA device (TensorRT)", "",
               f"The run's target, {p['target']}, runs {card['tensorrt']['target_runtime']}. To measure this file on "
               "an NVIDIA GPU with TensorRT instead, in the folder holding the file:", ""]),
            "```sh", card["tensorrt"]["trtexec"], "```", "",
            *([card["tensorrt"]["note"], ""] if card["tensorrt"]["note"] else []),
        ]),  # fmt: skip
        "## Full candidate",
        "",
        "| choice | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in card["candidate"]["choices"].items()],
        "",
        f"Exported by autocompress {card['autocompress_version']} on {card['exported']} from "
        f"`{card['run']['dir']}` (space {card['search']['space']}, sampler {card['search']['sampler']}, "
        f"seed {card['search']['seed']}).",
        "",
    ]
    return "\n".join(lines)


def _val_cell(a: dict[str, Any], fin: dict[str, Any] | None) -> str:
    """The card's validation row: what the search chose by, or the finalized file's (whose
    search-time figure the finalize row gives)."""
    val = f"{100 * a['val_in_trials_table']:.2f}%"
    if fin and fin.get("deployed") == "finalized":
        return f"validation accuracy (the finalized file) | {val}"
    return f"validation accuracy (search) | {val}"


def _interval_cell(p: dict[str, Any]) -> str:
    """The card's interval row (cards written before intervals existed have neither key)."""
    iv = p.get("latency_interval_ms")
    rng = f"{format_ms(iv[0])} – {format_ms(iv[1])}; " if iv else ""
    return f"{rng}{p.get('latency_interval', NO_BAND).removeprefix('latency interval: ')}"


def _finalize_rows(fin: dict[str, Any] | None) -> list[str]:
    """The model card's row about the finalize phase (none when the trial was not finalized)."""
    if not fin:
        return []

    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100 * float(v):.2f}%"

    if fin["state"] == "finalized":
        what = (f"**finalized**: this file is the long fine-tune's ({fin['schedule']}), deployed because it beat "
                f"the search's on validation ({pct(fin['search_val_accuracy'])} -> {pct(fin['final_val_accuracy'])}; "
                f"test {pct(fin['search_test_accuracy'])} -> {pct(fin['final_test_accuracy'])})")  # fmt: skip
    elif fin["state"] == "kept":
        what = (f"finalize tried ({fin['schedule']}) but scored {pct(fin['final_val_accuracy'])} on validation, "
                f"not better than the search's {pct(fin['search_val_accuracy'])}: this file is the search's")  # fmt: skip
    else:
        what = f"finalize was interrupted ({fin['schedule']}): this file is the search's"
    return [f"| finalize | {what} |"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _py(v: Any) -> Any:
    """numpy/pandas scalars to plain Python (for JSON and Candidate.from_flat)."""
    if isinstance(v, np.generic):
        return v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return str(v)

