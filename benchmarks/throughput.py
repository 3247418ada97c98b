"""Trials per minute: one ``autocompress search`` process vs ``--backend ray --workers 2``.

    python benchmarks/throughput.py                       # tiny space, 16 trials each, 2 rounds
    python benchmarks/throughput.py --space fashion_mnist --trials 20 --subset 0

Both runs search the same space, target, budget and seed with the same sampler; the supernet
is trained (or loaded) once before the timing. Trials per minute are counted over the search
phase: from the first trial's start to the last trial's end, from the Optuna study's own
timestamps (so process start-up, data loading and ``ray.init`` are excluded; the wall clock of
each whole command is reported beside it). Rounds alternate local/ray so that background load
hits both alike. Results: ``benchmarks/results/throughput.json``.

Run it on an otherwise idle machine: on a shared one the ratio says as much about the
neighbours as about Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent


def search(run_dir: Path, args: argparse.Namespace, *extra: str) -> float:
    cmd = [sys.executable, "-m", "autocompress", "search", "--space", args.space, "--target", args.target,
           "--budget", args.budget, "--trials", str(args.trials), "--run-dir", str(run_dir),
           *(["--subset", str(args.subset)] if args.subset else []), *extra]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if proc.returncode not in (0, 3):
        sys.exit(f"search failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def rate(run_dir: Path) -> tuple[float, int, float]:
    study = optuna.load_study(study_name="autocompress", storage=f"sqlite:///{run_dir / 'study.db'}")
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return 60 * len(done) / span, len(done), span


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="tiny")
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--budget", default="1s")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--subset", type=int, default=3000, help="cap every split (0: the full data set)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ac-throughput-"))
    warm = root / "warm"
    args_warm = argparse.Namespace(**{**vars(args), "trials": 1})
    search(warm, args_warm)  # trains or loads the supernet and its teacher logits once, untimed

    rows = []
    for r in range(args.rounds):
        for backend in ("local", "ray"):
            extra = ("--backend", "ray", "--workers", str(args.workers)) if backend == "ray" else ()
            run_dir = root / f"{backend}-{r}"
            wall = search(run_dir, args, *extra)
            per_min, n, span = rate(run_dir)
            rows.append({"round": r, "backend": backend, "trials": n, "search_s": round(span, 1),
                         "wall_s": round(wall, 1), "trials_per_min": round(per_min, 2)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    local = statistics.median(x["trials_per_min"] for x in rows if x["backend"] == "local")
    ray = statistics.median(x["trials_per_min"] for x in rows if x["backend"] == "ray")
    result = {
        "what": f"trials per minute, 1 process vs Ray Tune with {args.workers} workers (median of rounds)",
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"out": None},
        "local_trials_per_min": local, "ray_trials_per_min": ray, "speedup": round(ray / local, 2),
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg()},  # fmt: skip
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"1 process: {local:.2f} trials/min; Ray x{args.workers}: {ray:.2f} trials/min; "
          f"speed-up {ray / local:.2f}x (load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
