"""How well the measured CPU table predicts whole candidates on this machine, fp32, int8 and mixed:
right after ``profile`` here, and for a table profiled on another machine after the automatic
re-calibration (``hardware/host_fit.py``) that a search or ``validate-latency`` runs first.

    PYTHONPATH=. python benchmarks/latency_accuracy.py                 # the whole check (~15 min quiet)
    PYTHONPATH=. python benchmarks/latency_accuracy.py --table DIR     # skip the profile: validate DIR

The "other machine" is by default the shipped ``hw_latency_tables/x86-cpu-onnxruntime``, profiled
on another VM (see its ``device.yaml: host``; it records no machine id, so it is another machine
here whatever its CPU model string says). It is copied, re-calibrated here with a cache of the
run's own (so the fit is timed, not reused), then validated. Each validation: ``-n`` random
candidates of the space, exported as the search deploys them, timed end to end (10th percentile
of 50 runs, fastest of 3 passes) with ONNX Runtime, 1 thread. The load average is recorded with
every step: other work on the machine slows the timings that the table is compared with. The
summary also gives the share within ±10% with each validation's median error taken out: the
table's shape, apart from the machine's speed moving between the profile and the validation.

Writes ``<out>/summary.json``, ``<out>/summary.md`` and each validation's json/csv/png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("fp32", "int8", "mixed")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="fashion_mnist")
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latency_accuracy")
    ap.add_argument("--table", type=Path, help="a table profiled here already (skip the profile)")
    ap.add_argument("--other", type=Path, default=ROOT / "hw_latency_tables" / "x86-cpu-onnxruntime",
                    help="a table profiled on another machine")
    ap.add_argument("--skip-other", action="store_true")
    ap.add_argument("--skip-here", action="store_true", help="only the other machine's table")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["AUTOCOMPRESS_CACHE"] = str(out / "cache")  # the re-calibration is timed, not reused
    shutil.rmtree(out / "cache", ignore_errors=True)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from autocompress.hardware.host import cpu_model
    from autocompress.hardware.host_fit import on_this_host
    from autocompress.hardware.lut import load_device
    from autocompress.hardware.profile import profile_space
    from autocompress.hardware.targets import Target
    from autocompress.hardware.validate import validate_latency, write_validation
    from autocompress.space import load_space

    console = Console()
    space = load_space(args.space)
    rows: list[dict[str, object]] = []
    steps: list[dict[str, object]] = []

    def validate(scenario: str, target: Target, progress: Progress) -> None:
        for mode in MODES:
            task = progress.add_task(f"{scenario}: {mode}", total=args.n)
            before, t0 = load(), time.time()
            report = validate_latency(target, space, n=args.n, precision=mode,
                                      on_progress=lambda s, d, t, task=task: progress.update(task, completed=d * args.n // max(t, 1)))  # fmt: skip
            slug = "here" if scenario.startswith("after") else "other-recalibrated"
            write_validation(report, out / f"{slug}-{mode}")
            s = report.summary()
            rows.append({"scenario": scenario, **s, "load_before": before, "load_after": load(),
                         "seconds": round(time.time() - t0)})  # fmt: skip

    with Progress(console=console) as progress:
        if args.skip_here:
            folder = None  # nothing profiled: only the other machine's table is checked
        elif args.table is None:
            folder = out / "here" / "x86-cpu-onnxruntime"
            shutil.rmtree(folder, ignore_errors=True)
            task = progress.add_task("profile (blocks, int8 edges, 24+24+24 networks)", total=None)
            before, t0 = load(), time.time()
            profile_space(space, precisions=["fp32", "int8"], folder=folder, threads=1,
                          on_block=lambda d, t: progress.update(task, completed=d, total=t))  # fmt: skip
            steps.append({"step": "profile", "seconds": round(time.time() - t0), "load_before": before,
                          "load_after": load()})  # fmt: skip
        else:
            folder = args.table.resolve()
        if folder is not None:
            validate("after profile here", Target(folder=folder, device=load_device(folder / "device.yaml")), progress)
        if not args.skip_other:
            other_folder = out / "other" / args.other.name
            shutil.rmtree(other_folder, ignore_errors=True)
            shutil.copytree(args.other, other_folder)
            other = Target(folder=other_folder, device=load_device(other_folder / "device.yaml"))
            task = progress.add_task("re-calibrating the other machine's table", total=None)
            before, t0 = load(), time.time()
            check = on_this_host(other, space, on_progress=lambda d, t: progress.update(task, completed=d, total=t))
            steps.append({"step": "re-calibration", "seconds": round(time.time() - t0), "load_before": before,
                          "load_after": load(), "line": check.line})  # fmt: skip
            console.print(check.line or "(the table was measured here: nothing to re-calibrate)", highlight=False)
            validate("other machine, re-calibrated", check.target, progress)

    table = Table(title=f"Latency table vs end-to-end timings on this machine ({cpu_model()}, {os.cpu_count()} CPUs)")
    for col in ("scenario", "precision", "n", "within ±10%", "MAPE", "median error", "Spearman", "load (1/5/15 min)"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["scenario"]), str(r["precision"]), str(r["candidates"]), f"{100 * float(r['within_10pct']):.0f}%",  # type: ignore[arg-type]
                      f"{r['mape_pct']:.2f}%", f"{float(r['median_error_pct']):+.2f}%", f"{r['spearman']:.4f}",  # type: ignore[arg-type]
                      f"{r['load_before']} -> {r['load_after']}")  # fmt: skip
    console.print(table)
    summary = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "space": args.space, "n": args.n,
               "table": str(folder), "other": str(args.other), "steps": steps, "validations": rows}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = ["| scenario | precision | n | within ±10% | MAPE | median error | Spearman | timings not repeated "
          "| within ±10% of those repeated | within ±10%, level removed | load before -> after |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    md += [f"| {r['scenario']} | {r['precision']} | {r['candidates']} | {100 * float(r['within_10pct']):.0f}% | "  # type: ignore[arg-type]
           f"{r['mape_pct']:.2f}% | {float(r['median_error_pct']):+.2f}% | {r['spearman']:.4f} | "  # type: ignore[arg-type]
           f"{r['not_repeated']} | {100 * float(r['within_10pct_repeated']):.0f}% | "  # type: ignore[arg-type]
           f"{100 * float(r['within_10pct_level_removed']):.0f}% | "  # type: ignore[arg-type]
           f"{r['load_before']} -> {r['load_after']} |" for r in rows]  # fmt: skip
    (out / "summary.md").write_text("\n".join(md) + "\n")
    ok = all(float(r["within_10pct"]) >= 0.95 and float(r["spearman"]) >= 0.98 for r in rows)  # type: ignore[arg-type]
    console.print(f"goal (>= 95% within ±10% and Spearman >= 0.98 in every row): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
