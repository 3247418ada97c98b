"""Trials per minute: one ``autocompress search`` process vs ``--backend ray --workers 2``.

    python benchmarks/throughput.py                       # default space, full data, 12 trials each, 2 rounds
    python benchmarks/throughput.py --space tiny --subset 3000 --trials 16    # ~1 s trials: overhead-bound

Three variants search the same space, target, budget and seed with the same sampler: one
process as users run it (torch spreads its ops over every core), the same process held to one
thread (``OMP_NUM_THREADS=1``: what each Ray worker gets), and Ray Tune with ``--workers``
workers of one CPU each. The supernet is trained (or loaded) once before the timing; the CPU
time of each command (its process tree) over its wall time says how many cores it kept busy. Trials per minute are counted over the search
phase: from the first trial's start to the last trial's end, from the Optuna study's own
timestamps (so process start-up, data loading and ``ray.init`` are excluded; the wall clock of
each whole command is reported beside it). Rounds alternate the variants so that background load
hits all alike. Results: ``benchmarks/results/throughput.json``.

Run it on an otherwise idle machine: on a shared one the ratio says as much about the
neighbours as about Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent


def search(run_dir: Path, args: argparse.Namespace, *extra: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run one search; returns (wall seconds, CPU seconds of it and its children)."""
    cmd = [sys.executable, "-m", "autocompress", "search", "--space", args.space, "--target", args.target,
           "--budget", args.budget, "--trials", str(args.trials), "--run-dir", str(run_dir),
           *(["--subset", str(args.subset)] if args.subset else []), *extra]  # fmt: skip
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})  # fmt: skip
    if proc.returncode not in (0, 3):
        sys.exit(f"search failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, _children_cpu() - cpu0


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def rate(run_dir: Path) -> tuple[float, int, float]:
    study = optuna.load_study(study_name="autocompress", storage=f"sqlite:///{run_dir / 'study.db'}")
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return 60 * len(done) / span, len(done), span


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="fashion_mnist")
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--budget", default="1s")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--subset", type=int, default=0, help="cap every split (0: the full data set)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ac-throughput-"))
    warm = root / "warm"
    args_warm = argparse.Namespace(**{**vars(args), "trials": 1})
    search(warm, args_warm)  # trains or loads the supernet and its teacher logits once, untimed

    rows = []
    # local: one process as users run it (torch uses every core for its ops); local-1thread: the
    # same with torch/OpenMP held to one thread, i.e. what each Ray worker gets (one CPU)
    variants = {"local": ((), None), "local-1thread": ((), {"OMP_NUM_THREADS": "1"}),
                "ray": (("--backend", "ray", "--workers", str(args.workers)), None)}  # fmt: skip
    for r in range(args.rounds):
        for backend, (extra, env) in variants.items():
            run_dir = root / f"{backend}-{r}"
            wall, cpu = search(run_dir, args, *extra, env=env)
            per_min, n, span = rate(run_dir)
            if backend == "ray":  # Ray's workers are the raylet's children, not ours: not counted
                cpu = float("nan")
            rows.append({"round": r, "backend": backend, "trials": n, "search_s": round(span, 1),
                         "wall_s": round(wall, 1), "trials_per_min": round(per_min, 2),
                         "cpu_s": None if cpu != cpu else round(cpu, 1),
                         "cores_busy": None if cpu != cpu else round(cpu / wall, 2)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)

    def med(backend: str) -> float:
        return statistics.median(x["trials_per_min"] for x in rows if x["backend"] == backend)

    local, local1, ray = med("local"), med("local-1thread"), med("ray")
    result = {
        "what": f"trials per minute, 1 process vs Ray Tune with {args.workers} workers (median of rounds)",
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"out": None},
        "local_trials_per_min": local, "local_1thread_trials_per_min": local1, "ray_trials_per_min": ray,
        "speedup": round(ray / local, 2), "speedup_vs_1thread": round(ray / local1, 2),
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg()},  # fmt: skip
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"1 process: {local:.2f} trials/min (1 thread: {local1:.2f}); Ray x{args.workers}: {ray:.2f} trials/min; "
          f"speed-up {ray / local:.2f}x ({ray / local1:.2f}x over 1 thread; load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
