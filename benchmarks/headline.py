"""The headline run side by side with its fp32 teacher: how much smaller, how much faster, how much
accuracy it costs.

    make search                                   # or: autocompress search --target jetson --budget 10ms
    python benchmarks/headline.py [RUN_DIR]       # default: the latest runs/jetson-* (or runs/headline)

The teacher is the run's seeded trial 0: the largest subnet, fp32, no compression. Every Pareto
point under the budget is set beside it: file size ratio, latency measured here (ONNX Runtime,
1 thread, 10th percentile, all files interleaved, fastest of 3 passes, so the ratios come from
one run), latency predicted on the run's target (an estimate for devices we do not have) and the
test-accuracy difference. "Best" is the smallest file within 0.5 pp of the teacher's test
accuracy (the issue's accuracy goal); the most compressed points are listed too.
Writes ``benchmarks/results/headline.json`` and ``benchmarks/results/headline.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from autocompress.hardware.targets import get_target  # noqa: E402
from autocompress.results import read_config  # noqa: E402
from autocompress.runtime import measure_passes  # noqa: E402

MAX_DROP_PP = 0.5


def latest_run() -> Path:
    runs = sorted((ROOT / "runs").glob("*/trials.parquet"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit("no run under runs/: run 'make search' first")
    return runs[-1].parent


def main() -> None:
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else latest_run()
    cfg = read_config(run)
    target = get_target(cfg["target"])
    trials = pd.read_parquet(run / "trials.parquet")
    done = trials[trials.state == "COMPLETE"]
    teacher = done[done.number == 0].iloc[0]
    front = done[done.pareto & done.feasible].sort_values("size_bytes")
    rows = [teacher, *[r for _, r in front.iterrows() if r.number != 0]]
    paths = [Path(r.model_path) for r in rows]
    shapes = [(1, 1, int(r.resolution), int(r.resolution)) for r in rows]
    timings = measure_passes(paths, shapes, passes=3, reps=200)
    out = []
    for r, t in zip(rows, timings):
        out.append({
            "trial": int(r.number),
            "candidate": r.candidate,
            "test_accuracy": float(r.test_accuracy),
            "delta_pp": round(100 * (r.test_accuracy - teacher.test_accuracy), 2),
            "size_bytes": int(r.size_bytes),
            "size_ratio": round(teacher.size_bytes / r.size_bytes, 2),
            "measured_cpu_ms": round(t.p10_ms, 4),
            f"predicted_{target.name}_ms": round(float(r.latency_ms), 4),
            "qat_applied": bool(r.get("qat_applied", False)),
        })  # fmt: skip
    base = out[0]
    for o in out:
        o["speedup_cpu"] = round(base["measured_cpu_ms"] / o["measured_cpu_ms"], 2)
        o["speedup_predicted"] = round(base[f"predicted_{target.name}_ms"] / o[f"predicted_{target.name}_ms"], 2)
    within = [o for o in out[1:] if o["delta_pp"] >= -MAX_DROP_PP]
    best = min(within, key=lambda o: o["size_bytes"]) if within else None
    label = "estimated" if target.table.device.source == "estimated" else "measured"
    result = {
        "run": str(run.relative_to(ROOT) if run.is_relative_to(ROOT) else run),
        "target": target.name, "target_source": label, "budget_ms": cfg["budget_ms"],
        "trials_completed": int(len(done)), "teacher": base, "best_within_0_5pp": best, "pareto": out[1:],
        "goal": {"size_ratio": 8, "speedup": 4, "max_drop_pp": MAX_DROP_PP},
    }  # fmt: skip
    dest = ROOT / "benchmarks" / "results"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "headline.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(out, best, dest / "headline.png")
    pred = f"predicted_{target.name}_ms"
    print(f"run {result['run']}: {len(done)} trials, target {target.name} ({label}), budget {cfg['budget_ms']} ms")
    print(f"\n| trial | candidate | test acc (Δ pp) | size (× smaller) | CPU ms measured (× faster) | {target.name} ms, {label} (×) |")
    print("|---|---|---:|---:|---:|---:|")
    for o in out:
        mark = " **best**" if best is not None and o is best else (" teacher" if o is base else "")
        print(f"| {o['trial']}{mark} | `{o['candidate']}` | {100 * o['test_accuracy']:.2f}% ({o['delta_pp']:+.2f}) "
              f"| {o['size_bytes'] / 1024:.0f} KB ({o['size_ratio']:.2f}×) | {o['measured_cpu_ms']:.3f} ({o['speedup_cpu']:.2f}×) "
              f"| {o[pred]:.3f} ({o['speedup_predicted']:.2f}×) |")  # fmt: skip


def _plot(rows: list[dict], best: dict | None, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rest = rows[1:]
    ax.scatter([r["size_ratio"] for r in rest], [r["delta_pp"] for r in rest], c=[r["speedup_cpu"] for r in rest],
               cmap="viridis", s=40, label="Pareto points")  # fmt: skip
    for r in rest:
        ax.annotate(f"{r['speedup_cpu']:.1f}×", (r["size_ratio"], r["delta_pp"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")  # fmt: skip
    if best is not None:
        ax.scatter([best["size_ratio"]], [best["delta_pp"]], s=160, facecolors="none", edgecolors="red",
                   label="best within 0.5 pp")  # fmt: skip
    ax.axhline(-MAX_DROP_PP, color="grey", ls="--", lw=1)
    ax.axvline(8, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("file size: × smaller than the fp32 teacher (log)")
    ax.set_ylabel("test accuracy − teacher's (pp)")
    ax.set_title("Headline Pareto set vs fp32 teacher (labels: × faster, measured CPU)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
