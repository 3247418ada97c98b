"""Bring your own model: two networks the project does not define (``tests/byom_models.py``: a
ResNet with residual adds, a MobileNet with depthwise convs and squeeze-excite), trained briefly
on Fashion-MNIST, then compressed by ``autocompress search --model ... --weights ...`` on
x86-cpu-onnxruntime with a budget that binds (a share of the original's predicted latency).

    python benchmarks/byom.py resnet          # one model (the two can run side by side)
    python benchmarks/byom.py mobilenet
    python benchmarks/byom.py --report        # -> benchmarks/results/byom.json + a Markdown table

For the original and every Pareto point: accuracy of the file as ONNX Runtime runs it (test
split), file size, predicted latency, and latency measured here (ONNX Runtime, 1 thread, 10th
percentile of interleaved runs, fastest of 3 passes), with ratios against the original.
"""

from __future__ import annotations

import json
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

SUBSET = 1000  # every split capped: 1000 train, 1000 val, 1000 calib, 1000 test images
TRAIN_STEPS = 100
BUDGET_SHARE = 0.8  # budget = this share of the original's predicted latency
TRIALS = 6
SPACE = {"prune_ratio": [0.0, 0.25, 0.5, 0.7], "kd_alpha": [0.0, 0.7], "kd_temperature": [4.0],
         "finetune_steps": [0, 20], "finetune_batch_size": 64}  # fmt: skip
OUT = ROOT / "benchmarks" / "results"


def run_model(name: str) -> dict:
    work = ROOT / "runs" / "byom-benchmark" / name
    work.mkdir(parents=True, exist_ok=True)
    data = load_dataset("fashion-mnist", subset=SUBSET, seed=0)
    x, y = data.split("train")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = bm.train(getattr(bm, name)(), x, y, steps=TRAIN_STEPS, batch_size=64)
    train_s = time.perf_counter() - t0
    weights = work / f"{name}.pt"
    torch.save(model.state_dict(), weights)
    space = work / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    from autocompress.byom.evaluate import ModelEvaluator
    from autocompress.byom.model import load_user_model
    from autocompress.byom.space import derive_space, load_model_space_spec
    from autocompress.hardware.targets import get_target

    user = load_user_model(f"tests/byom_models.py:{name}", weights, default_shape=(1, 28, 28))
    target = get_target("cpu")
    sp = derive_space(user.module, torch.zeros(2, 1, 28, 28), load_model_space_spec(space),
                      precisions=list(target.device.precisions))  # fmt: skip
    ev = ModelEvaluator(user=user, space=sp, data=data, target=target, models_dir=work)
    original_ms = ev.predict(sp.largest()).latency_ms
    budget_us = BUDGET_SHARE * original_ms * 1000
    run = work / "run"
    t1 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "autocompress", "search", "--model", f"tests/byom_models.py:{name}",
         "--weights", str(weights), "--dataset", "fashion-mnist", "--subset", str(SUBSET), "--target", "cpu",
         "--budget", f"{budget_us:.1f}us", "--trials", str(TRIALS), "--space", str(space), "--run-dir", str(run)]
        + (["--resume"] if (run / "study.db").exists() else []),
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    search_s = time.perf_counter() - t1
    print(proc.stdout[-4000:], proc.stderr[-2000:])
    if proc.returncode not in (0, 3):
        raise SystemExit(proc.returncode)
    config = yaml.safe_load((run / "config.yaml").read_text())
    trials = pd.read_parquet(run / "trials.parquet")
    front = pd.read_csv(run / "pareto.csv")
    base = config["baseline"]
    paths = [Path(base["model_path"])] + [Path(p) for p in front["model_path"]]
    timings = measure_passes(paths, [(1, 1, 28, 28)] * len(paths), passes=3, reps=100, threads=1)
    orig_ms = timings[0].p10_ms
    points = []
    for (_, r), t in zip(front.iterrows(), timings[1:]):
        points.append({
            "trial": int(r["number"]), "candidate": r["candidate"],
            "val_accuracy": float(r["val_accuracy"]), "test_accuracy": float(r["test_accuracy"]),
            "test_accuracy_delta_pt": round(100 * (float(r["test_accuracy"]) - base["test_accuracy"]), 2),
            "size_bytes": int(r["size_bytes"]), "size_ratio": round(base["size_bytes"] / float(r["size_bytes"]), 2),
            "params": int(r["params"]), "predicted_ms": round(float(r["latency_ms"]), 4),
            "measured_ms": round(t.p10_ms, 4), "measured_speedup": round(orig_ms / t.p10_ms, 2),
        })  # fmt: skip
    done = trials[trials["state"] == "COMPLETE"]
    result = {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "train": {"steps": TRAIN_STEPS, "batch": 64, "seconds": round(train_s, 1), "subset": SUBSET},
        "space": config["space"]["dimensions"],
        "prune_groups": [g["name"] for g in config["space"]["prune_groups"]],
        "budget_ms": config["budget_ms"],
        "trials": int(len(done)),
        "feasible": int(done["feasible"].sum()),
        "search_seconds": round(search_s, 1),
        "original": {"test_accuracy": base["test_accuracy"], "val_accuracy": base["val_accuracy"],
                     "size_bytes": base["size_bytes"], "predicted_ms": round(base["latency_ms"], 4),
                     "measured_ms": round(orig_ms, 4)},  # fmt: skip
        "pareto": points,
        "measured_how": "ONNX Runtime CPU, 1 thread, 10th percentile of 100 interleaved runs, fastest of 3 passes",
    }
    (OUT / "byom").mkdir(parents=True, exist_ok=True)
    (OUT / "byom" / f"{name}.json").write_text(json.dumps(result, indent=2))
    return result


def report() -> None:
    parts = {p.stem: json.loads(p.read_text()) for p in sorted((OUT / "byom").glob("*.json"))}
    (OUT / "byom.json").write_text(json.dumps({"note": "machine shared with four other agents while measured; "
                                               "latencies are noisy", "models": parts}, indent=2))  # fmt: skip
    for name, r in parts.items():
        o = r["original"]
        print(f"\n{name}: {r['params']:,} params, trained {r['train']['steps']} steps; original test "
              f"{100 * o['test_accuracy']:.2f}%, {o['size_bytes'] / 1000:.1f} kB, predicted {o['predicted_ms']:.3f} ms, "
              f"measured {o['measured_ms']:.3f} ms; budget {r['budget_ms']:.3f} ms; {r['trials']} trials "
              f"({r['feasible']} within budget) in {r['search_seconds']:.0f} s\n")
        print("| trial | test acc (Δ pt) | size (× smaller) | predicted ms | measured ms (× faster) | candidate |")
        print("|---:|---:|---:|---:|---:|---|")
        for p in r["pareto"]:
            print(f"| {p['trial']} | {100 * p['test_accuracy']:.2f}% ({p['test_accuracy_delta_pt']:+.2f}) | "
                  f"{p['size_bytes'] / 1000:.1f} kB ({p['size_ratio']:.2f}×) | {p['predicted_ms']:.3f} | "
                  f"{p['measured_ms']:.3f} ({p['measured_speedup']:.2f}×) | `{p['candidate']}` |")


if __name__ == "__main__":
    if sys.argv[1:] == ["--report"]:
        report()
    else:
        for model_name in sys.argv[1:] or ["resnet", "mobilenet"]:
            run_model(model_name)
