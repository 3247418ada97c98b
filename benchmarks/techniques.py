"""Each compression technique alone (and combined) on the same fp32 teacher, the largest subnet.

    make search                          # trains and caches the supernet once
    python benchmarks/techniques.py      # then this (about 10 minutes on 2 cores)
    python benchmarks/techniques.py --only QAT --out benchmarks/results/techniques-qat.json

For every variant: accuracy of the exported file as ONNX Runtime runs it (val and test),
file size, parameters, MACs, latency measured here (ONNX Runtime, 1 thread, 10th percentile,
fastest of 3 passes; fp16 runs through casts on an x86 CPU, so its CPU time is not an fp16
speed) and predicted on the estimated jetson-orin-nano table. Results go to
``benchmarks/results/techniques.json`` and are printed as a Markdown table.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autocompress.data import load_dataset  # noqa: E402
from autocompress.hardware.targets import get_target  # noqa: E402
from autocompress.problems.supernet import SupernetProblem  # noqa: E402
from autocompress.runtime import measure_passes  # noqa: E402
from autocompress.space import Candidate, load_space, space_from_dict  # noqa: E402
from autocompress.supernet import load_or_train  # noqa: E402

KD = {"kd_alpha": 0.5, "kd_temperature": 4.0, "finetune_steps": 200}
NO_KD = {"kd_alpha": 0.0, "kd_temperature": 4.0, "finetune_steps": 200}
NO_FT = {"kd_alpha": 0.0, "kd_temperature": 4.0, "finetune_steps": 0}


def variant(base: dict, stages: int, prune: float, precision: str, train: dict, qat: bool = False) -> Candidate:
    flat = dict(base)
    for i in range(stages):
        flat[f"s{i}_prune"] = prune
        flat[f"s{i}_precision"] = precision
    return Candidate.from_flat({**flat, **train, "qat": qat})


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the teacher and the variants whose name contains this")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "techniques.json")
    args = parser.parse_args()
    space = load_space("fashion_mnist")
    # QAT rows: QAT runs whatever PTQ lost (threshold below any loss), so PTQ and QAT are both
    # measured; the evaluator deploys the one better on validation
    raw = space.to_dict()
    raw["compression"]["qat_threshold_pp"] = -100.0
    space = space_from_dict(raw)
    data = load_dataset("fashion-mnist", seed=0)
    supernet, report, cached = load_or_train(space, data, seed=0)
    jetson = get_target("jetson")
    base = space.largest().to_flat()
    n = len(space.model.stages)
    variants = {
        "fp32 teacher (largest subnet, no fine-tune)": variant(base, n, 0.0, "fp32", NO_FT),
        "fp32 teacher + 200-step KD fine-tune": variant(base, n, 0.0, "fp32", KD),
        "prune 0.25 + KD fine-tune": variant(base, n, 0.25, "fp32", KD),
        "prune 0.50 + KD fine-tune": variant(base, n, 0.5, "fp32", KD),
        "prune 0.75 + KD fine-tune": variant(base, n, 0.75, "fp32", KD),
        "prune 0.50, fine-tune without KD": variant(base, n, 0.5, "fp32", NO_KD),
        "int8 PTQ (stages), no fine-tune": variant(base, n, 0.0, "int8", NO_FT),
        "int8 PTQ then QAT (200 steps, KD)": variant(base, n, 0.0, "int8", {**NO_FT, "kd_alpha": 0.5}, qat=True),
        "fp16 (stages), no fine-tune": variant(base, n, 0.0, "fp16", NO_FT),
        "prune 0.50 + KD + int8 PTQ": variant(base, n, 0.5, "int8", KD),
        "prune 0.75 + KD + int8 PTQ": variant(base, n, 0.75, "int8", KD),
        "prune 0.75 + KD + int8 PTQ then QAT": variant(base, n, 0.75, "int8", KD, qat=True),
    }
    if args.only:
        first = next(iter(variants))
        variants = {k: v for k, v in variants.items() if k == first or args.only in k}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ev = SupernetProblem.from_parts(space=space, data=data, supernet=supernet, target=jetson, models_dir=Path(tmp),
                       supernet_key=report.key)  # fmt: skip
        for i, (name, cand) in enumerate(variants.items()):
            t0 = time.perf_counter()
            r = ev.evaluate(cand, i)
            rows.append({"variant": name, "candidate": cand.describe(), **r.to_dict(),
                         "jetson_est_ms": r.latency_ms, "wall_s": round(time.perf_counter() - t0, 1)})  # fmt: skip
            print(f"{name}: test {100 * r.test_accuracy:.2f}%", flush=True)
        paths = [Path(r["model_path"]) for r in rows]
        res = space.largest().resolution
        timings = measure_passes(paths, [(1, 1, res, res)] * len(paths), passes=3, reps=100)
    teacher = rows[0]
    for r, t in zip(rows, timings):
        r["measured_cpu_ms"] = t.p10_ms
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"supernet_cached": cached, "rows": rows}, indent=2) + "\n")
    print("\nint8 rows, validation accuracy: float → PTQ → QAT")
    for r in rows:
        if r.get("float_val_accuracy") is not None:
            ptq = r["float_val_accuracy"] - r["ptq_drop_pp"] / 100
            qat = r.get("qat_val_accuracy")
            print(f"  {r['variant']}: {100 * r['float_val_accuracy']:.2f}% → {100 * ptq:.2f}%"
                  + (f" → {100 * qat:.2f}% (deployed: {'QAT' if r['qat_applied'] else 'PTQ'})" if qat else ""))
    print("\n| variant | test acc (Δ pp) | size (× smaller) | params | MACs | measured CPU ms (× faster) | jetson est. ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['variant']} | {100 * r['test_accuracy']:.2f}% ({100 * (r['test_accuracy'] - teacher['test_accuracy']):+.2f}) "
            f"| {r['size_bytes'] / 1024:.0f} KB ({teacher['size_bytes'] / r['size_bytes']:.2f}×) | {r['params']:,} "
            f"| {r['macs'] / 1e6:.2f} M | {r['measured_cpu_ms']:.3f} ({teacher['measured_cpu_ms'] / r['measured_cpu_ms']:.2f}×) "
            f"| {r['jetson_est_ms']:.3f} |"
        )


if __name__ == "__main__":
    main()
