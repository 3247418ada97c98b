"""Are this machine's timings repeatable enough to judge a ±10% latency model?

    python benchmarks/timing_repeat.py [--precision fp32|int8|mixed] [-n 60] [--passes 3] [--rounds R]

Exports ``-n`` random candidates of the default space as ``validate-latency`` does, then times
them twice, exactly as ``validate-latency`` does (``measure_passes``: groups of interleaved
files, 10th percentile of 50 runs, fastest of ``--passes`` passes, ONNX Runtime, 1 thread), with
two different orders. It prints how often the two timings agree: the share within ±5% and ±10%,
the median |difference| and the Spearman rank correlation. A model cannot be shown to be within
±10% on a machine whose own timings do not agree that closely.

Each round does this twice, side by side: ``plain`` keeps the fastest of the passes as it is,
``re-timed`` re-times models whose fastest pass was not repeated (what ``measure_passes`` does by
default). ``--rounds`` alternates the two, so both meet the same periods of the machine.
``--out FILE`` appends one JSON line per timing pair.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from autocompress.hardware.validate import GROUP, build_model, candidates  # noqa: E402
from autocompress.runtime import CONFIRM, measure_passes  # noqa: E402
from autocompress.space import load_space  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", default="fp32", choices=("fp32", "int8", "mixed"))
    ap.add_argument("-n", type=int, default=60)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    space = load_space("fashion_mnist")
    cands = candidates(space, args.n, args.precision, ["fp32", "int8"], 0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [build_model(c, space, 1, 10, Path(tmp), f"c{i}", "onnxruntime") for i, c in enumerate(cands)]
        shapes = [(1, 1, c.resolution, c.resolution) for c in cands]
        for rnd in range(args.rounds):
            for mode, confirm in (("plain", None), ("re-timed", CONFIRM)):
                t0, load = time.perf_counter(), os.getloadavg()[0]
                a, b = (measure_passes(paths, shapes, passes=args.passes, group=GROUP, threads=1, reps=50,
                                       seed=seed + 10 * rnd, confirm=confirm) for seed in (1, 2))  # fmt: skip
                line = agreement(np.array([t.p10_ms for t in a]), np.array([t.p10_ms for t in b]))
                line = {"round": rnd, "mode": mode, "precision": args.precision, "n": args.n, "passes": args.passes,
                        **line, "extra_timings": sum(t.passes - args.passes for t in a + b),
                        "not_repeated": sum(not t.repeated for t in a + b),
                        "seconds": round(time.perf_counter() - t0, 1), "load": round(load, 2),
                        "at": time.strftime("%H:%M:%S")}  # fmt: skip
                print(json.dumps(line), flush=True)
                if args.out:
                    with args.out.open("a") as f:
                        f.write(json.dumps(line) + "\n")


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, object]:
    r = b / a - 1
    return {"range_ms": [round(float(a.min()), 4), round(float(a.max()), 4)],
            "within_5pct": round(float(np.mean(abs(r) <= 0.05)), 3),
            "within_10pct": round(float(np.mean(abs(r) <= 0.10)), 3),
            "median_abs_pct": round(float(np.median(abs(r))) * 100, 2),
            "spearman": round(float(spearmanr(a, b)[0]), 4)}  # fmt: skip


if __name__ == "__main__":
    main()
