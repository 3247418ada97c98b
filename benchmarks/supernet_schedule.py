"""Supernet schedules side by side: what each costs in minutes and what it gives the subnets.

    python benchmarks/supernet_schedule.py --name base                       # the shipped schedule
    python benchmarks/supernet_schedule.py --name ps --largest-first 1.5 --epochs 3
    python benchmarks/supernet_schedule.py --name probe --epochs 0.1 --largest-first 0.1 --no-eval

Trains the default space's supernet (``fashion_mnist``, real Fashion-MNIST train split, seed 0)
with the space's training block overridden by the options, exactly as ``autocompress search``
trains it (``supernet.train_supernet``), and reports:

- wall time, and seconds per step in each phase (largest alone; sandwich);
- test accuracy (torch, BN re-calibrated per subnet, all 10,000 test images) of the largest
  network (the teacher), the smallest, and ``--subnets`` random architectures drawn with a fixed
  seed, so every schedule is judged on the same networks.

Writes ``benchmarks/results/supernet_schedule/<name>.json``. ``--threads`` sets torch's threads
(2 = what ``make search`` uses on the 2-core machine). The load average is recorded beside the
times: other work on the machine slows them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from autocompress.data import load_dataset  # noqa: E402
from autocompress.space import SearchSpace, SpaceModel, load_space  # noqa: E402
from autocompress.supernet import subnet_accuracy, train_supernet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--epochs", type=float, help="sandwich epochs (default: the space's)")
    ap.add_argument("--largest-first", type=float, default=None, help="epochs of the largest alone first")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--sandwich-random", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--subnets", type=int, default=6)
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = load_space("fashion_mnist")
    overrides = {k: v for k, v in {"epochs": args.epochs, "largest_first_epochs": args.largest_first,
                                   "lr": args.lr, "sandwich_random": args.sandwich_random}.items() if v is not None}  # fmt: skip
    raw = base.to_dict()
    raw["training"] = {**raw["training"], **overrides}
    space = SearchSpace(SpaceModel.model_validate(raw))
    cfg = space.model.training
    data = load_dataset("fashion-mnist", seed=0)
    stamps: list[float] = []
    load_before = os.getloadavg()

    def on_step(step: int, total: int, loss: float) -> None:
        stamps.append(time.perf_counter())
        if step % 200 == 0 or step == total:
            print(f"  step {step}/{total} loss {loss:.3f}  load {os.getloadavg()[0]:.2f}", flush=True)

    t0 = time.perf_counter()
    net, report = train_supernet(space, data, seed=0, on_step=on_step)
    wall = time.perf_counter() - t0
    n_train = data.split("train")[0].shape[0]
    first = -(-int(cfg.largest_first_epochs * n_train) // cfg.batch_size) if cfg.largest_first_epochs else 0
    gaps = [b - a for a, b in zip([t0, *stamps[:-1]], stamps, strict=True)]
    per_step = {
        "largest_alone": round(sum(gaps[1:first]) / max(1, first - 1), 4) if first > 1 else None,
        "sandwich": round(sum(gaps[first + 1 :]) / max(1, len(gaps) - first - 1), 4),
    }
    out = {
        "name": args.name,
        "training": cfg.model_dump(),
        "threads": args.threads,
        "steps": report.steps,
        "largest_first_steps": first,
        "train_seconds": round(wall, 1),
        "seconds_per_step": per_step,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    print(json.dumps(out, indent=1), flush=True)
    if not args.no_eval:
        rng = random.Random(1234)
        nets = {"largest": space.largest(), "smallest": space.smallest()}
        nets.update({f"random{i}": space.random(rng, architecture_only=True) for i in range(args.subnets)})
        out["test_accuracy"] = {}
        for key, cand in nets.items():
            acc = subnet_accuracy(net, cand, data, "test")
            out["test_accuracy"][key] = {"arch": cand.describe(), "acc": acc}
            print(f"  {key:9s} {acc:.4f}  {cand.describe()}", flush=True)
        accs = [v["acc"] for k, v in out["test_accuracy"].items() if k.startswith("random")]
        out["random_mean"] = round(sum(accs) / len(accs), 5) if accs else None
    dest = ROOT / "benchmarks" / "results" / "supernet_schedule" / f"{args.name}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
