"""The headline run side by side with its fp32 teacher: how much smaller, how much faster, how much
accuracy it costs.

    make search                                   # or: autocompress search --target jetson --budget 10ms
    python benchmarks/headline.py [RUN_DIR]       # default: the latest runs/jetson-* (or runs/headline)

The teacher is the run's seeded trial 0: the largest subnet, fp32, no compression. Every Pareto
point under the budget is set beside it: file size ratio, latency measured here (ONNX Runtime,
1 thread, 10th percentile, all files interleaved, fastest of 3 passes, so the ratios come from
one run), latency predicted on the run's target (an estimate for devices we do not have) and the
test-accuracy difference. For each phase (the search's numbers, and after the finalize phase the
deployed ones, against the teacher's own numbers of that phase: it gets the same training) it
reports the most accurate point at >= 8x smaller, the most accurate at >= 4x faster (measured
here), the smallest within 0.5 pp of the teacher, and whether one point meets all three (the
goal).
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
GOAL_SIZE, GOAL_SPEED = 8, 4


def latest_run() -> Path:
    runs = sorted((ROOT / "runs").glob("*/trials.parquet"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit("no run under runs/: run 'make search' first")
    return runs[-1].parent


def phase_view(done: pd.DataFrame, phase: str) -> pd.DataFrame:
    """The completed trials as the search left them (``search``: the ``search_*`` columns of a
    finalized run) or as deployed after the finalize phase (``final``: the plain columns)."""
    if phase == "final" or "search_val_accuracy" not in done:
        return done
    out = done.copy()
    for col in ("val_accuracy", "test_accuracy", "size_bytes", "model_path", "qat_applied"):
        if f"search_{col}" in out:
            out[col] = out[f"search_{col}"]
    out["pareto"] = out["search_pareto"]
    return out


def summarise(view: pd.DataFrame, timings: dict[str, float], target_name: str) -> dict:
    """Every feasible Pareto point beside the teacher (trial 0) of one phase, and the three bests."""
    teacher = view[view.number == 0].iloc[0]
    front = view[view.pareto.astype(bool) & view.feasible.astype(bool)].sort_values("size_bytes")
    rows = [teacher, *[r for _, r in front.iterrows() if r.number != 0]]
    out = []
    for r in rows:
        out.append({
            "trial": int(r.number),
            "candidate": r.candidate,
            "finalize": r.get("final_state") if isinstance(r.get("final_state"), str) else None,
            "test_accuracy": float(r.test_accuracy),
            "delta_pp": round(100 * (r.test_accuracy - teacher.test_accuracy), 2),
            "size_bytes": int(r.size_bytes),
            "size_ratio": round(teacher.size_bytes / r.size_bytes, 2),
            "measured_cpu_ms": round(timings[str(r.model_path)], 4),
            f"predicted_{target_name}_ms": round(float(r.latency_ms), 4),
            "qat_applied": bool(r.get("qat_applied", False)),
        })  # fmt: skip
    base = out[0]
    for o in out:
        o["speedup_cpu"] = round(base["measured_cpu_ms"] / o["measured_cpu_ms"], 2)
        o["speedup_predicted"] = round(base[f"predicted_{target_name}_ms"] / o[f"predicted_{target_name}_ms"], 2)
    rest = out[1:]

    def most_accurate(pool: list[dict]) -> dict | None:
        return max(pool, key=lambda o: (o["delta_pp"], o["size_ratio"])) if pool else None

    within = [o for o in rest if o["delta_pp"] >= -MAX_DROP_PP]
    return {
        "teacher": base,
        "best_at_8x_smaller": most_accurate([o for o in rest if o["size_ratio"] >= GOAL_SIZE]),
        "best_at_4x_faster_cpu": most_accurate([o for o in rest if o["speedup_cpu"] >= GOAL_SPEED]),
        "best_within_0_5pp": min(within, key=lambda o: o["size_bytes"]) if within else None,
        "goal_met_by": [o["trial"] for o in within if o["size_ratio"] >= GOAL_SIZE and o["speedup_cpu"] >= GOAL_SPEED],
        "pareto": rest,
    }


def main() -> None:
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else latest_run()
    cfg = read_config(run)
    target = get_target(cfg["target"])
    trials = pd.read_parquet(run / "trials.parquet")
    done = trials[trials.state == "COMPLETE"]
    finalized = "search_val_accuracy" in done
    phases = ["search", "final"] if finalized else ["search"]
    views = {ph: phase_view(done, ph) for ph in phases}
    for view in views.values():  # the files in the run's models/ (paths are recorded from where it ran)
        view["model_path"] = [str(run / "models" / Path(p).name) if (run / "models" / Path(p).name).is_file() else p
                              for p in view["model_path"]]  # fmt: skip
    # every file of both phases timed in one interleaved measurement, so all ratios share it
    files: dict[str, tuple] = {}
    for view in views.values():
        for _, r in view[(view.number == 0) | (view.pareto.astype(bool) & view.feasible.astype(bool))].iterrows():
            files[str(r.model_path)] = (1, 1, int(r.resolution), int(r.resolution))
    timings = measure_passes([Path(p) for p in files], list(files.values()), passes=3, reps=200)
    ms = {p: t.p10_ms for p, t in zip(files, timings)}
    label = "estimated" if target.table.device.source == "estimated" else "measured"
    result = {
        "run": str(run.relative_to(ROOT) if run.is_relative_to(ROOT) else run),
        "target": target.name, "target_source": label, "budget_ms": cfg["budget_ms"],
        "trials_completed": int(len(done)), "finalize": cfg.get("finalize"),
        "goal": {"size_ratio": GOAL_SIZE, "speedup_cpu": GOAL_SPEED, "max_drop_pp": MAX_DROP_PP},
        **{ph: summarise(views[ph], ms, target.name) for ph in phases},
    }  # fmt: skip
    dest = ROOT / "benchmarks" / "results"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "headline.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    last = result[phases[-1]]
    _plot(last["pareto"], last["teacher"], last["best_within_0_5pp"], dest / "headline.png",
          before=result["search"]["pareto"] if finalized else None)  # fmt: skip
    pred = f"predicted_{target.name}_ms"
    print(f"run {result['run']}: {len(done)} trials, target {target.name} ({label}), budget {cfg['budget_ms']} ms")
    for ph in phases:
        r = result[ph]
        title = "after finalize (deployed)" if ph == "final" else "search (before finalize)"
        print(f"\n### {title}: teacher test {100 * r['teacher']['test_accuracy']:.2f}%")
        for key, what in (("best_at_8x_smaller", f">= {GOAL_SIZE}x smaller"),
                          ("best_at_4x_faster_cpu", f">= {GOAL_SPEED}x faster (CPU, measured)"),
                          ("best_within_0_5pp", f"<= {MAX_DROP_PP} pp of the teacher (smallest)")):  # fmt: skip
            o = r[key]
            print(f"- best at {what}: " + ("none" if o is None else
                  f"trial {o['trial']}, {o['delta_pp']:+.2f} pp, {o['size_ratio']:.2f}x smaller, "
                  f"{o['speedup_cpu']:.2f}x faster"))  # fmt: skip
        print(f"- goal (>= {GOAL_SIZE}x smaller and >= {GOAL_SPEED}x faster at <= {MAX_DROP_PP} pp): "
              + (f"met by trials {r['goal_met_by']}" if r["goal_met_by"] else "not met"))
        print(f"\n| trial | candidate | finalize | test acc (Δ pp) | size (× smaller) | CPU ms measured (× faster) "
              f"| {target.name} ms, {label} (×) |")
        print("|---|---|---|---:|---:|---:|---:|")
        for o in [r["teacher"], *r["pareto"]]:
            mark = " teacher" if o is r["teacher"] else ""
            print(f"| {o['trial']}{mark} | `{o['candidate']}` | {o['finalize'] or ''} "
                  f"| {100 * o['test_accuracy']:.2f}% ({o['delta_pp']:+.2f}) "
                  f"| {o['size_bytes'] / 1024:.0f} KB ({o['size_ratio']:.2f}×) | {o['measured_cpu_ms']:.3f} "
                  f"({o['speedup_cpu']:.2f}×) | {o[pred]:.3f} ({o['speedup_predicted']:.2f}×) |")  # fmt: skip


def _plot(rest: list[dict], teacher: dict, best: dict | None, path: Path, *, before: list[dict] | None) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if before is not None:
        ax.scatter([r["size_ratio"] for r in before], [r["delta_pp"] for r in before], c="#bbbbbb", s=25,
                   label="before finalize (search)")  # fmt: skip
    ax.scatter([r["size_ratio"] for r in rest], [r["delta_pp"] for r in rest], c=[r["speedup_cpu"] for r in rest],
               cmap="viridis", s=40, label="Pareto points" + (" after finalize" if before is not None else ""))  # fmt: skip
    for r in rest:
        ax.annotate(f"{r['speedup_cpu']:.1f}×", (r["size_ratio"], r["delta_pp"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")  # fmt: skip
    if best is not None:
        ax.scatter([best["size_ratio"]], [best["delta_pp"]], s=160, facecolors="none", edgecolors="red",
                   label="best within 0.5 pp")  # fmt: skip
    ax.axhline(-MAX_DROP_PP, color="grey", ls="--", lw=1)
    ax.axvline(GOAL_SIZE, color="grey", ls=":", lw=1)
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
