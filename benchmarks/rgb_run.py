"""An end-to-end RGB run: the ``mobilenet_rgb`` space at 64-96 px on ``--target jetson`` with a
budget that binds, on the colourised Fashion-MNIST image folder (a stand-in for a user's photos).

    python benchmarks/rgb_run.py                   # writes the folder if missing, runs, reports
    python benchmarks/rgb_run.py --report-only     # summarise an existing run again

1. ``benchmarks/rgb_folder.py`` writes ``data/fashion_mnist_rgb`` (96 px RGB PNGs) if it is missing.
2. The space variant ``benchmarks/results/mobilenet_rgb_96.yaml`` is derived from the shipped
   ``mobilenet_rgb``:
   resolutions 64 and 96 only, fine-tune steps 0 or 50, 6 supernet epochs at batch 64 (a 2-core
   budget: 375 steps of 4,000 images); every other choice is the shipped space's.
3. ``autocompress search --space <variant> --dataset imagefolder:data/fashion_mnist_rgb
   --target jetson --budget 1.9ms --subset 4000 --trials 14 --finalize 0`` runs with ``OMP_NUM_THREADS=1``
   (on a machine shared by many processes, torch's second thread mostly spins); the budget comes
   from ``autocompress space <variant> --target jetson`` (1.26–2.49 ms ESTIMATED; it suggests
   1.9 ms); the load average is sampled every 15 s while it runs.
4. The summary (``benchmarks/results/rgb_run_<run>.json`` and ``.png``): share of trials over
   the budget, the Pareto set (accuracy, ESTIMATED latency, size), the largest network's accuracy
   (trial 0, seeded: the largest subnet, fp32, uncompressed), wall time and load.
Latencies on jetson-orin-nano are ESTIMATES (roofline model; no Jetson was measured).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FOLDER = ROOT / "data" / "fashion_mnist_rgb"
VARIANT = RESULTS / "mobilenet_rgb_96.yaml"


def write_variant(path: Path = VARIANT, epochs: float = 6, finetune: tuple[int, ...] = (0, 50)) -> Path:
    """The shipped mobilenet_rgb space at 64-96 px with a 2-core training budget."""
    from autocompress.space import load_space, space_from_dict

    d = load_space("mobilenet_rgb").to_dict()
    d["name"] = "mobilenet_rgb_96"
    d["description"] = "mobilenet_rgb at 64-96 px, 2-core training budget (written by benchmarks/rgb_run.py)"
    d["dataset"] = "imagefolder:data/fashion_mnist_rgb"
    d["input"]["resolution"] = [64, 96]
    d["compression"]["finetune_steps"] = list(finetune)
    d["training"].update(epochs=epochs, batch_size=64)
    space_from_dict(d)  # valid before it is written
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Derived from search_spaces/mobilenet_rgb.yaml by benchmarks/rgb_run.py; do not edit.\n"
                    + yaml.safe_dump(d, sort_keys=False))  # fmt: skip
    return path


def run(args: argparse.Namespace) -> dict:
    if not FOLDER.is_dir():
        from benchmarks.rgb_folder import write_folder

        write_folder(FOLDER, 96, 600)
    space = write_variant(VARIANT, args.epochs, tuple(int(v) for v in args.finetune.split(",")))
    cmd = [sys.executable, "-m", "autocompress", "search", "--space", str(space),
           "--dataset", f"imagefolder:{FOLDER}", "--target", "jetson", "--budget", args.budget,
           "--subset", str(args.subset), "--trials", str(args.trials), "--run-dir", str(args.run_dir),
           "--finalize", "0"]  # fmt: skip
    if args.timeout:
        cmd += ["--timeout", str(args.timeout)]
    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(15):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    start = time.time()
    env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    wall = time.time() - start
    done.set()
    info = {
        "command": " ".join(["autocompress"] + cmd[3:]),
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start)),
        "cpus": os.cpu_count(),
        "load_avg_1min": {"mean": round(sum(loads) / len(loads), 1) if loads else None,
                          "max": round(max(loads), 1) if loads else None, "samples": len(loads)},
    }  # fmt: skip
    (args.run_dir / "rgb_run_wall.json").write_text(json.dumps(info, indent=2))
    return info


def report(run_dir: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from autocompress.results import read_config

    trials = pd.read_parquet(run_dir / "trials.parquet")
    cfg = read_config(run_dir)
    budget = float(cfg.get("budget_ms") or cfg.get("budget", {}).get("budget_ms"))
    priced = trials[trials["latency_ms"].notna()]
    over = priced[priced["latency_ms"] > budget]
    done = trials[trials["state"] == "COMPLETE"]
    pareto = done[done["pareto"].fillna(False).astype(bool)].sort_values("latency_ms")
    largest = trials[trials["number"] == 0].iloc[0]
    wall = json.loads((run_dir / "rgb_run_wall.json").read_text()) if (run_dir / "rgb_run_wall.json").exists() else {}
    out = {
        "run_dir": str(run_dir),
        "target": cfg.get("target"),
        "budget_ms": budget,
        "latency_label": "ESTIMATED (roofline model of jetson-orin-nano, not measured on a Jetson)",
        "data": "colourised Fashion-MNIST written as 96 px RGB PNGs (a stand-in for photos, not photos)",
        "trials": int(len(trials)),
        "priced": int(len(priced)),
        "over_budget": int(len(over)),
        "share_over_budget": round(len(over) / max(1, len(priced)), 3),
        "largest": {"candidate": largest["candidate"], "val_accuracy": _f(largest["val_accuracy"]),
                    "test_accuracy": _f(largest["test_accuracy"]), "latency_ms_estimated": _f(largest["latency_ms"]),
                    "size_bytes": _i(largest["size_bytes"]), "feasible": bool(largest["feasible"])},
        "pareto": [{"trial": int(r.number), "val_accuracy": _f(r.val_accuracy), "test_accuracy": _f(r.test_accuracy),
                    "latency_ms_estimated": _f(r.latency_ms), "size_bytes": _i(r.size_bytes),
                    "candidate": r.candidate} for r in pareto.itertuples()],
        **wall,
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"rgb_run_{run_dir.name}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = priced[priced["latency_ms"] <= budget]
    ax.scatter(over["latency_ms"], over["val_accuracy"].fillna(0) * 100, c="tab:red", marker="x",
               label=f"over budget ({len(over)}/{len(priced)})")  # fmt: skip
    ax.scatter(ok["latency_ms"], ok["val_accuracy"] * 100, c="tab:blue", label="within budget")
    ax.plot(pareto["latency_ms"], pareto["val_accuracy"] * 100, "k--", lw=1, label="Pareto set")
    ax.axvline(budget, color="tab:red", lw=1)
    ax.set_xlabel("latency on jetson-orin-nano, ms (ESTIMATED)")
    ax.set_ylabel("validation accuracy, % (ONNX Runtime)")
    ax.set_title("mobilenet_rgb 64-96 px on colourised Fashion-MNIST (stand-in for photos)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=120)
    return out


def _f(v: object) -> float | None:
    return None if v is None or v != v else round(float(v), 5)  # type: ignore[arg-type]


def _i(v: object) -> int | None:
    return None if v is None or v != v else int(v)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "rgb-jetson")
    ap.add_argument("--budget", default="1.9ms")
    ap.add_argument("--trials", type=int, default=14)
    ap.add_argument("--subset", type=int, default=4000)
    ap.add_argument("--epochs", type=float, default=6, help="supernet epochs of the variant")
    ap.add_argument("--finetune", default="0,50", help="fine-tune step choices of the variant")
    ap.add_argument("--timeout", type=float, default=None, help="start no trial after this many seconds")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if not args.report_only:
        info = run(args)
        if info["exit_code"] != 0:
            print(f"error: the search exited with {info['exit_code']}", file=sys.stderr)
            sys.exit(2)
    print(json.dumps(report(args.run_dir), indent=2))


if __name__ == "__main__":
    main()
