"""Bring your own model: networks the project does not define (``tests/byom_models.py``: a
ResNet with residual adds, a MobileNet with depthwise convs and squeeze-excite, and the
concatenating families: DenseNet, pre-activation ResNet, U-Net, YOLO-style neck), trained on
Fashion-MNIST, then compressed by ``autocompress search --model ... --weights ...`` on
x86-cpu-onnxruntime with a budget that binds (``--budget-share`` of the original's predicted
latency, with the run's layer scale fitted on this machine as the search fits it).

    python benchmarks/byom.py search resnet                           # train + search
    python benchmarks/byom.py search mobilenet --budget-share 0.9     # (0.8: nothing fits)
    python benchmarks/byom.py search densenet --train-steps 600 --trials 12 --finetune-steps 0 150 300
    python benchmarks/byom.py measure      # time every Pareto file: idle machine
    python benchmarks/byom.py report       # -> results/byom.json + Markdown tables

``search`` trains each original (``--train-steps`` SGD steps of 64 images from the first
``--subset`` training images; 0: the full split), saves its state dict as a user would, and
runs the search (``--trials``) on the derived space with the fine-tune/KD/QAT choices of ``SPACE``. Latency there is the layer table's
prediction (times the run's scale, fitted at search start on the original timed here), so other
work on the machine changes the search only through that one timing. ``measure`` then times the
original and every Pareto file here (ONNX Runtime, 1 thread, median and 10th percentile of
interleaved runs, fastest of 3 passes): run it on an otherwise idle machine. For each point:
accuracy of the file as ONNX Runtime runs it (test split), file size, predicted and measured
latency, with ratios against the original. Training and searching run with one torch thread
(``OMP_NUM_THREADS=1``): on a 2-core machine shared with other work, two OpenMP threads that wait
for each other made a DenseNet training step 60x slower (1.5 s instead of 0.026 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from autocompress.data import load_dataset  # noqa: E402
from autocompress.runtime import measure_passes  # noqa: E402
from tests import byom_models as bm  # noqa: E402

SPACE = {"prune_ratio": [0.0, 0.25, 0.5, 0.7], "kd_alpha": [0.0, 0.7], "kd_temperature": [4.0],
         "finetune_steps": [0, 150, 400], "finetune_batch_size": 64, "finetune_lr": 0.01,
         "qat": [False, True], "qat_steps": 100}  # fmt: skip
BATCH = 64
OUT = ROOT / "benchmarks" / "results"
WORK = ROOT / "runs" / "byom-benchmark"


def run_model(name: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    subset = args.subset or None
    data = load_dataset("fashion-mnist", subset=subset, seed=0)
    x, y = data.split("train")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = bm.train(getattr(bm, name)(), x, y, steps=args.train_steps, batch_size=BATCH)
    train_s = time.perf_counter() - t0
    weights = work / f"{name}.pt"
    torch.save(model.state_dict(), weights)
    space = work / "space.yaml"
    space.write_text(yaml.safe_dump({**SPACE, **({"finetune_steps": args.finetune_steps} if args.finetune_steps else {})}))
    from autocompress.hardware.targets import get_target
    from autocompress.problems.user_model.loader import load_user_model
    from autocompress.problems.user_model.problem import UserModelProblem
    from autocompress.problems.user_model.space import derive_space, load_model_space_spec

    user = load_user_model(f"tests/byom_models.py:{name}", weights, default_shape=(1, 28, 28))
    target = get_target("cpu")
    sp = derive_space(user.module, torch.zeros(2, 1, 28, 28), load_model_space_spec(space),
                      precisions=list(target.device.precisions))  # fmt: skip
    scale_dir = work / "scale"
    scale_dir.mkdir(exist_ok=True)
    ev = UserModelProblem.from_parts(user=user, space=sp, data=data, target=target, models_dir=scale_dir)
    ev.check()
    original_ms = ev.prepare(scale_dir)["baseline"]["latency_ms"]  # with the run's scale, as the search prices
    budget_us = args.budget_share * original_ms * 1000
    run = work / "run"
    t1 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "autocompress", "search", "--model", f"tests/byom_models.py:{name}",
         "--weights", str(weights), "--dataset", "fashion-mnist", *(["--subset", str(subset)] if subset else []),
         "--target", "cpu", "--budget", f"{budget_us:.1f}us", "--trials", str(args.trials), "--space", str(space),
         "--run-dir", str(run)] + (["--resume"] if (run / "study.db").exists() else []),
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    search_s = time.perf_counter() - t1
    print(proc.stdout[-4000:], proc.stderr[-2000:])
    if proc.returncode not in (0, 3):
        raise SystemExit(proc.returncode)
    summary = {"model": name, "params": sum(p.numel() for p in model.parameters()),
               "train": {"steps": args.train_steps, "batch": BATCH, "seconds": round(train_s, 1),
                         "subset": subset, "images": int(x.shape[0])},
               "search_seconds": round(search_s, 1), "budget_share": args.budget_share,
               "space_override": SPACE}  # fmt: skip
    (work / "summary.json").write_text(json.dumps(summary, indent=2))


def measure() -> None:
    """Time the original and every Pareto file of each searched model, all in one interleaved set."""
    OUT.joinpath("byom").mkdir(parents=True, exist_ok=True)
    for work in sorted(p for p in WORK.iterdir() if (p / "summary.json").is_file()):
        summary = json.loads((work / "summary.json").read_text())
        run = work / "run"
        config = yaml.safe_load((run / "config.yaml").read_text())
        trials = pd.read_parquet(run / "trials.parquet")
        front = pd.read_csv(run / "pareto.csv")
        base = config["baseline"]
        paths = [Path(base["model_path"])] + [Path(p) for p in front["model_path"]]
        timings = measure_passes(paths, [(1, 1, 28, 28)] * len(paths), passes=3, reps=200, threads=1)
        orig_ms, orig_median = timings[0].p10_ms, timings[0].median_ms
        points = []
        for (_, r), t in zip(front.iterrows(), timings[1:]):
            points.append({
                "trial": int(r["number"]), "candidate": r["candidate"],
                "val_accuracy": float(r["val_accuracy"]), "test_accuracy": float(r["test_accuracy"]),
                "test_accuracy_delta_pt": round(100 * (float(r["test_accuracy"]) - base["test_accuracy"]), 2),
                "size_bytes": int(r["size_bytes"]), "size_ratio": round(base["size_bytes"] / float(r["size_bytes"]), 2),
                "params": int(r["params"]), "predicted_ms": round(float(r["latency_ms"]), 4),
                "measured_ms": round(t.p10_ms, 4), "measured_speedup": round(orig_ms / t.p10_ms, 2),
                "measured_median_ms": round(t.median_ms, 4),
                "predicted_vs_median_pct": round(100 * (float(r["latency_ms"]) / t.median_ms - 1), 1),
                "qat_applied": bool(r.get("qat_applied", False)),
            })  # fmt: skip
        done = trials[trials["state"] == "COMPLETE"]
        qat_col = done["qat_val_accuracy"] if "qat_val_accuracy" in done else pd.Series(dtype=float)
        result = {
            **summary,
            "space": config["space"]["dimensions"],
            "prune_groups": [g["name"] for g in config["space"]["prune_groups"]],
            "budget_ms": config["budget_ms"],
            "trials": int(len(done)),
            "feasible": int(done["feasible"].sum()),
            "int8_trials": int(done["ptq_drop_pp"].notna().sum()) if "ptq_drop_pp" in done else 0,
            "ptq_drop_pp_max": float(done["ptq_drop_pp"].max()) if "ptq_drop_pp" in done else None,
            "qat_runs": int(qat_col.notna().sum()),
            "qat_applied": int(done["qat_applied"].fillna(False).astype(bool).sum()) if "qat_applied" in done else 0,
            "original": {"test_accuracy": base["test_accuracy"], "val_accuracy": base["val_accuracy"],
                         "size_bytes": base["size_bytes"], "predicted_ms": round(base["latency_ms"], 4),
                         "measured_ms": round(orig_ms, 4), "measured_median_ms": round(orig_median, 4),
                         "predicted_vs_median_pct": round(100 * (base["latency_ms"] / orig_median - 1), 1)},  # fmt: skip
            "latency_scale": base.get("latency_scale"),
            "pareto": points,
            "measured_how": "ONNX Runtime CPU, 1 thread, 10th percentile (and median) of 200 interleaved runs, "
                            "fastest of 3 passes",
            "load_average_after": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        (OUT / "byom" / f"{summary['model']}.json").write_text(json.dumps(result, indent=2))
        print(f"{summary['model']}: original {orig_ms:.4f} ms measured; {len(points)} Pareto points timed")


def report() -> None:
    parts = {p.stem: json.loads(p.read_text()) for p in sorted((OUT / "byom").glob("*.json"))}
    (OUT / "byom.json").write_text(json.dumps({"models": parts}, indent=2))
    for name, r in parts.items():
        o = r["original"]
        print(f"\n{name}: {r['params']:,} params, trained {r['train']['steps']} steps on {r['train']['images']:,} images; "
              f"original test "
              f"{100 * o['test_accuracy']:.2f}%, {o['size_bytes'] / 1000:.1f} kB, predicted {o['predicted_ms']:.3f} ms, "
              f"measured {o['measured_ms']:.3f} ms; budget {r['budget_ms']:.3f} ms ({r['budget_share']} × predicted); "
              f"{r['trials']} trials "
              f"({r['feasible']} within budget) in {r['search_seconds']:.0f} s; int8 PTQ lost at most "
              f"{r['ptq_drop_pp_max']} pp over {r['int8_trials']} int8 trials; QAT ran {r['qat_runs']}×, kept "
              f"{r['qat_applied']}×\n")
        scale = r.get("latency_scale") or {}
        for prec, net in (scale.get("networks") or {}).items():
            print(f"run scale, {prec} original: predicted {net['predicted_before_ms']:.4f} ms with the table's scale, "
                  f"measured {net['measured_ms']:.4f} ms (median) at search start, predicted "
                  f"{net['predicted_after_ms']:.4f} ms with layer_scale {scale['layer_scale'][prec]}")
        if "measured_median_ms" in o:
            print(f"original re-timed by measure: median {o['measured_median_ms']:.4f} ms; predicted/measured "
                  f"{o['predicted_vs_median_pct']:+.1f}%\n")
        print("| trial | test acc (Δ pt) | size (× smaller) | predicted ms | measured ms p10 (× faster) | "
              "median ms (pred. error) | candidate |")
        print("|---:|---:|---:|---:|---:|---:|---|")
        for p in r["pareto"]:
            med = (f"{p['measured_median_ms']:.3f} ({p['predicted_vs_median_pct']:+.1f}%)"
                   if "measured_median_ms" in p else "")  # fmt: skip
            print(f"| {p['trial']} | {100 * p['test_accuracy']:.2f}% ({p['test_accuracy_delta_pt']:+.2f}) | "
                  f"{p['size_bytes'] / 1000:.1f} kB ({p['size_ratio']:.2f}×) | {p['predicted_ms']:.3f} | "
                  f"{p['measured_ms']:.3f} ({p['measured_speedup']:.2f}×) | {med} | `{p['candidate']}` |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("search", "measure", "report"))
    ap.add_argument("models", nargs="*", default=["resnet", "mobilenet"])
    ap.add_argument("--subset", type=int, default=10000, help="cap every split (0: the full data set)")
    ap.add_argument("--train-steps", type=int, default=800, help="SGD steps (batch 64) training each original")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--finetune-steps", type=int, nargs="+", help="override SPACE's finetune_steps choices")
    ap.add_argument("--budget-share", type=float, default=0.8,
                    help="budget = this share of the original's predicted latency")
    args = ap.parse_args()
    if args.step == "search":
        for model_name in args.models:
            run_model(model_name, args)
    elif args.step == "measure":
        measure()
    else:
        report()


if __name__ == "__main__":
    main()
