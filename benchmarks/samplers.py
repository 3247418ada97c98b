"""Search efficiency of the samplers: hypervolume (accuracy x latency) after N trials.

    python benchmarks/samplers.py                 # 5 seeds; results/samplers.json + samplers.png
    python benchmarks/samplers.py --jobs 2         # seeds in 2 processes (1 torch thread each)
    python benchmarks/samplers.py --seeds 1 --trials 20 --random-trials 40    # a quick look

TPE, NSGA-II and GP (Optuna's, as ``autocompress search --sampler`` builds them) after
``--trials`` trials, random search after ``--trials`` and ``--random-trials``, each over
``--seeds`` seeds, on the default Fashion-MNIST space with a budget on the measured
``x86-cpu-onnxruntime`` table that binds (``--budget-quantile`` of random candidates' predicted
latencies). Every study uses the product's space, ``trial.set_constraint`` budget and sampler
settings (``make_sampler``); the largest/smallest networks the product enqueues first are left
out unless ``--seeded`` (at this fidelity the smallest network is near the best feasible point,
and every sampler would tie from trial 2).

Cheap fidelity (stated in the results): a candidate's accuracy is the torch accuracy of its
pruned, BatchNorm-recalibrated subnet sliced from the cached supernet, on ``--val`` validation
images, with no fine-tune and no int8 effect on accuracy (int8 still changes the latency).
Latency is the table's prediction, exactly as in the search. Two objectives (accuracy up,
latency down), the two the hypervolume is over. Evaluations are memoised per candidate in
``--memo`` so that reruns are cheap. The supernet must already be cached (``make search``
trains it); this script never trains it.

Hypervolume: over feasible trials, in (accuracy, latency) with the reference point
(accuracy ``--ref-acc``, latency = the budget); the area of accuracy gained above the reference
times latency saved below the budget (units: accuracy x ms).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autocompress import compress  # noqa: E402
from autocompress.arch import block_precisions, unpruned  # noqa: E402
from autocompress.data import load_dataset  # noqa: E402
from autocompress.hardware.predict import predict  # noqa: E402
from autocompress.hardware.targets import get_target  # noqa: E402
from autocompress.search import make_sampler  # noqa: E402
from autocompress.space import load_space  # noqa: E402
from autocompress.supernet import accuracy, load_or_train, recalibrate_bn  # noqa: E402

SAMPLERS = ("tpe", "nsga2", "gp")
_MAIN_PID = os.getpid()


def hypervolume(points: list[tuple[float, float]], ref_acc: float, ref_lat: float) -> float:
    """2-D hypervolume of (accuracy up, latency down) points against (ref_acc, ref_lat)."""
    pts = sorted((lat, acc) for acc, lat in points if acc > ref_acc and lat < ref_lat)
    front: list[tuple[float, float]] = []
    for lat, acc in pts:  # ascending latency: keep the points more accurate than every faster one
        if not front or acc > front[-1][1]:
            front.append((lat, acc))
    hv = 0.0
    for i, (lat, acc) in enumerate(front):  # each front point owns the strip up to the next one
        nxt = front[i + 1][0] if i + 1 < len(front) else ref_lat
        hv += (nxt - lat) * (acc - ref_acc)
    return hv


class CheapEvaluator:
    def __init__(self, space, data, supernet, table, n_val: int, memo: Path, recalib: int = 4) -> None:
        self.space, self.data, self.net, self.table = space, data, supernet, table
        self.n_val, self.recalib = n_val, recalib
        self.memo_path = memo
        self.memo: dict[str, float] = json.loads(memo.read_text()) if memo.is_file() else {}
        self.evaluations = 0
        self.seconds = 0.0

    def latency(self, cand) -> float:
        blocks = self.net.plan(cand)
        return predict(self.table, blocks, block_precisions(cand, self.space, blocks)).latency_ms

    def accuracy(self, cand) -> float:
        # precision and fine-tune choices do not change this fidelity's accuracy
        key = json.dumps({k: v for k, v in cand.to_flat().items()
                          if not k.endswith("_precision") and not k.startswith(("kd_", "finetune"))},
                         sort_keys=True)  # fmt: skip
        if key not in self.memo:
            t0 = time.perf_counter()
            sub = self.net.extract(unpruned(cand))
            x_tr, _ = self.data.split("train", cand.resolution)
            images = x_tr[: 256 * self.recalib]
            recalibrate_bn(sub, images, self.recalib)
            sub = compress.prepare(sub, cand, self.space, calibration=images if any(cand.prune) else None)
            sub.eval()
            xv, yv = self.data.split("val", cand.resolution)
            self.memo[key] = accuracy(sub, xv[: self.n_val], yv[: self.n_val])
            self.evaluations += 1
            self.seconds += time.perf_counter() - t0
            if self.evaluations % 25 == 0 and os.getpid() == _MAIN_PID:
                self.save()
        return self.memo[key]

    def save(self) -> None:
        self.memo_path.parent.mkdir(parents=True, exist_ok=True)
        self.memo_path.write_text(json.dumps(self.memo))


def run_study(sampler: str, seed: int, n: int, ev: CheapEvaluator, budget: float,
              seeded: bool = False) -> list[tuple[float, float, bool]]:  # fmt: skip
    """One search with the product's sampler and constraint, at the cheap fidelity; returns
    (acc, lat, feasible) per trial. ``seeded``: enqueue the largest and smallest networks first,
    as ``autocompress search`` does (off by default: at this fidelity the smallest network is
    close to the best feasible point, and every sampler would tie from trial 2)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(sampler, seed))
    sampled = {k for k, v in ev.space.dimensions().items() if len(v) > 1}
    for cand in (ev.space.largest(), ev.space.smallest()) if seeded else ():
        study.enqueue_trial({k: v for k, v in cand.to_flat().items() if k in sampled})
    out = []
    for _ in range(n):
        trial = study.ask()
        cand = ev.space.sample(trial)
        lat = ev.latency(cand)
        acc = ev.accuracy(cand)
        trial.set_constraint("latency", lat - budget)
        study.tell(trial, [acc, lat])
        out.append((acc, lat, lat <= budget))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--random-trials", type=int, default=150)
    ap.add_argument("--target", default="x86-cpu-onnxruntime")
    ap.add_argument("--seeded", action="store_true", help="enqueue the largest and smallest networks first")
    ap.add_argument("--budget-quantile", type=float, default=0.5,
                    help="budget = this quantile of 2000 random candidates' predicted latencies")
    ap.add_argument("--ref-acc", type=float, default=0.8)
    ap.add_argument("--val", type=int, default=1000, help="validation images per accuracy")
    ap.add_argument("--recalib", type=int, default=4, help="BatchNorm recalibration batches of 256 images")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in this many processes at once")
    ap.add_argument("--memo", type=Path, default=ROOT / "runs" / "bench-samplers-memo.json")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    space = load_space(None)
    data = load_dataset(space.model.dataset, seed=0)
    supernet, report, cached = load_or_train(space, data, seed=0, retrain=False) if _cached(space, data) else (None,) * 3
    if supernet is None:
        sys.exit("the fashion_mnist supernet is not cached; run `make search` first (this script never trains it)")
    table = get_target(args.target).table
    ev = CheapEvaluator(space, data, supernet, table, args.val, args.memo, args.recalib)
    rng = random.Random(0)
    lats = sorted(ev.latency(space.random(rng)) for _ in range(2000))
    budget = float(np.quantile(lats, args.budget_quantile))
    print(f"{args.target}: random candidates {lats[0]:.4f}..{lats[-1]:.4f} ms; budget {budget:.4f} ms "
          f"(the {args.budget_quantile:.0%} quantile: binds)", flush=True)  # fmt: skip

    global _EV, _ARGS, _BUDGET  # the seeds' worker processes inherit these (fork)
    _EV, _ARGS, _BUDGET = ev, args, budget
    runs: dict[str, dict[str, list]] = {}
    t0 = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.jobs) as pool:
            per_seed = pool.map(_run_seed, range(args.seeds), chunksize=1)
    else:
        per_seed = [_run_seed(seed) for seed in range(args.seeds)]
    for seed, (seed_runs, memo, evaluations, seconds) in enumerate(per_seed):
        for name, r in seed_runs.items():
            runs.setdefault(name, {})[str(seed)] = r
        ev.memo.update(memo)
        ev.evaluations += evaluations
        ev.seconds += seconds
    ev.save()

    def med(name: str, k: int) -> float:
        return statistics.median(runs[name][str(s)]["hv"][str(k)] for s in range(args.seeds))

    summary = {f"{s}@{args.trials}": med(s, args.trials) for s in (*SAMPLERS, "random")}
    summary[f"random@{args.random_trials}"] = med("random", args.random_trials)
    result = {
        "what": "hypervolume (accuracy x latency ms) of feasible trials, median over seeds",
        "target": args.target, "budget_ms": budget, "budget_quantile": args.budget_quantile,
        "reference_point": {"accuracy": args.ref_acc, "latency_ms": budget},
        "seeds": args.seeds, "trials": args.trials, "random_trials": args.random_trials,
        "seeded_extremes": args.seeded,
        "fidelity": f"torch accuracy of the pruned, BN-recalibrated subnet ({args.recalib} batches of 256) on {args.val} "
                    "val images; no fine-tune; int8 changes latency only",
        "objectives": ["val_accuracy (max)", "latency_ms (min)"],
        "space": "fashion_mnist", "median_hypervolume": summary,
        "default_sampler_at_n_vs_random_at_3n": summary[f"tpe@{args.trials}"] >= summary[f"random@{args.random_trials}"],
        "evaluations": ev.evaluations, "evaluation_seconds": round(ev.seconds, 1),
        "wall_s": round(time.perf_counter() - t0, 1), "torch_threads": args.threads, "jobs": args.jobs,
        "optuna": optuna.__version__, "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "samplers.json").write_text(json.dumps(result, indent=1))
    plot(runs, args, summary, budget, args.out / "samplers.png")
    print(json.dumps(summary, indent=1))


_EV: CheapEvaluator
_ARGS: argparse.Namespace
_BUDGET: float


def _run_seed(seed: int) -> tuple[dict[str, dict], dict[str, float], int, float]:
    """Every sampler's study for one seed (in a worker process when ``--jobs`` > 1)."""
    ev, args, budget = _EV, _ARGS, _BUDGET
    torch.set_num_threads(args.threads)
    before, seconds0 = ev.evaluations, ev.seconds
    out, t0 = {}, time.perf_counter()
    for name, n in [*((s, args.trials) for s in SAMPLERS), ("random", args.random_trials)]:
        trials = run_study(name, seed, n, ev, budget, args.seeded)
        hv = {str(k): hypervolume([(a, lat) for a, lat, ok in trials[:k] if ok], args.ref_acc, budget)
              for k in range(1, n + 1)}  # fmt: skip
        out[name] = {"hv": hv, "feasible": sum(ok for *_, ok in trials),
                     "trials": [[round(a, 5), round(lat, 5)] for a, lat, _ in trials]}  # fmt: skip
        print(f"seed {seed} {name:>6}: HV@{args.trials} {hv[str(args.trials)]:.5f}"
              + (f"  HV@{n} {hv[str(n)]:.5f}" if n != args.trials else "")
              + f"  ({ev.evaluations - before} evaluations, {time.perf_counter() - t0:.0f} s)", flush=True)
    return out, ev.memo, ev.evaluations - before, ev.seconds - seconds0


def _cached(space, data) -> bool:
    from autocompress.data_files import cache_dir
    from autocompress.supernet import supernet_key

    return (cache_dir() / "supernets" / f"{supernet_key(space, data, 0)}.pt").is_file()


def plot(runs, args, summary, budget, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colors = {"tpe": "#1f4e79", "nsga2": "#2e8b57", "gp": "#c0392b", "random": "#888888"}
    for name, per_seed in runs.items():
        n = len(next(iter(per_seed.values()))["hv"])
        curve = [statistics.median(r["hv"][str(k)] for r in per_seed.values()) for k in range(1, n + 1)]
        ax.plot(range(1, n + 1), curve, label=name, c=colors.get(name), lw=1.8 if name == "tpe" else 1.2)
    ax.axvline(args.trials, ls=":", c="#555", lw=1)
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume (accuracy × ms), median of seeds")
    ax.set_title(f"fashion_mnist on {args.target}, budget {budget:.3f} ms; ref. point (acc {args.ref_acc}, "
                 f"{budget:.3f} ms)", fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.text(0.01, 0.01, "cheap fidelity: no fine-tune, torch fp32 accuracy of the pruned subnet", fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out)
    plt.close(fig)


if __name__ == "__main__":
    main()
