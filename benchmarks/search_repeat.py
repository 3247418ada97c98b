"""Repeat the headline search and kill-and-resume it, and print the numbers for README.md.

    make search                                   # first run: trains and caches the supernet
    python benchmarks/search_repeat.py            # then this

1. search A, the same settings in a new run directory: reuses the cached supernet (pass
   --fresh-cache to train in an empty cache instead, and --twice to run a second search B);
2. search C with --resume-trials N: SIGKILLed once K trials completed, then --resume'd to N;
   checks that every trial completed before the kill is still there, unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def search(run_dir: Path, args: argparse.Namespace, trials: int, *extra: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "autocompress", "search", "--target", args.target, "--budget", args.budget,
           "--trials", str(trials), "--run-dir", str(run_dir), *extra]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if proc.returncode != 0:
        sys.exit(f"search failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="jetson")
    ap.add_argument("--budget", default="10ms")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--kill-after", type=int, default=5, help="completed trials before the SIGKILL")
    ap.add_argument("--resume-trials", type=int, default=12, help="trials of the kill-and-resume run")
    ap.add_argument("--twice", action="store_true", help="also time a second search after the first")
    ap.add_argument("--fresh-cache", action="store_true", help="train the supernet in an empty cache")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if args.fresh_cache:
        os.environ["AUTOCOMPRESS_CACHE"] = tempfile.mkdtemp(prefix="ac-cache-")
    root = Path(tempfile.mkdtemp(prefix="ac-bench-"))
    res: dict[str, object] = {"target": args.target, "budget": args.budget, "trials": args.trials}

    t_a, out_a = search(root / "a", args, args.trials)
    res.update(a_s=round(t_a, 1), a_supernet=[ln for ln in out_a.splitlines() if ln.startswith("supernet:")])
    if args.twice:
        t_b, out_b = search(root / "b", args, args.trials)
        res.update(b_s=round(t_b, 1), b_reused="reused from cache" in out_b)

    run_c = root / "c"
    cmd = [sys.executable, "-m", "autocompress", "search", "--target", args.target, "--budget", args.budget,
           "--trials", str(args.resume_trials), "--run-dir", str(run_c)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = pd.DataFrame()
    while proc.poll() is None:
        time.sleep(1)
        try:
            before = pd.read_parquet(run_c / "trials.parquet")
        except (OSError, ValueError):
            continue
        if (before["state"] == "COMPLETE").sum() >= args.kill_after:
            time.sleep(2.0)  # land mid-trial
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = pd.read_parquet(run_c / "trials.parquet")
    kept = before[before["state"] == "COMPLETE"].set_index("number")
    t_c, _ = search(run_c, args, args.resume_trials, "--resume")
    after = pd.read_parquet(run_c / "trials.parquet")
    done = after[after["state"] == "COMPLETE"].set_index("number")
    unchanged = all(done.loc[n, "val_accuracy"] == r["val_accuracy"] for n, r in kept.iterrows())
    res.update(
        killed_with_completed=len(kept),
        after_resume_completed=len(done),
        completed_before_kill_unchanged=bool(unchanged),
        interrupted_marked_failed=int((after["state"] == "FAIL").sum()),
        retried=int(after["retry_of"].notna().sum()),
        duplicate_numbers=int(after["number"].duplicated().sum()),
        resume_s=round(t_c, 1),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_repeat.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
