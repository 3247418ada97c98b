"""Finalize time per candidate on the default space (``fashion_mnist``), with its shipped schedule.

    python benchmarks/finalize_time.py [--steps 40]

For three candidates of the default space (the largest network — the teacher, which finalize
always trains — the smallest, and a middle one pruned by 0.25 with int8 stages), times
``--steps`` optimizer steps of the finalize trainer (``compress.distill_epochs``: batch, KD loss
against teacher logits, SGD, cosine schedule, exactly as finalize runs them) on the real
Fashion-MNIST train split at the candidate's resolution, and the deploy step once (export, PTQ,
accuracy by ONNX Runtime on val and test: ``SupernetProblem._deploy``). The supernet is freshly
initialised: a step costs the same whatever the weights (the accuracies printed are meaningless
and not reported). The time of a whole finalize is projected: seconds per step × the schedule's
steps (epochs × ceil(train split / batch)) + the deploy step. The machine's load average is
printed beside the numbers: on a shared machine they are slower than on an idle one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from autocompress import compress  # noqa: E402
from autocompress.arch import unpruned  # noqa: E402
from autocompress.compress.longtrain import steps_per_epoch  # noqa: E402
from autocompress.data import load_dataset  # noqa: E402
from autocompress.hardware.targets import get_target  # noqa: E402
from autocompress.problems.supernet import SupernetProblem  # noqa: E402
from autocompress.space import Candidate, load_space  # noqa: E402
from autocompress.supernet import Supernet, extract_calibrated  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    space = load_space("fashion_mnist")
    spec = space.model.finalize
    data = load_dataset("fashion-mnist", seed=0)
    torch.manual_seed(0)
    net = Supernet(space, data.channels, data.num_classes, *data.mean_std())
    mid = {**space.largest().to_flat(), "resolution": 24, "s1_depth": 2, "s2_depth": 2,
           "s0_prune": 0.25, "s1_prune": 0.25, "s2_prune": 0.25, "s1_precision": "int8", "s2_precision": "int8",
           "qat": False}  # fmt: skip
    cands = {"largest (teacher)": space.largest(), "middle": Candidate.from_flat(mid), "smallest": space.smallest()}
    n_train = data.split("train")[0].shape[0]
    per_epoch = steps_per_epoch(n_train, spec)
    total = spec.epochs * per_epoch
    print(f"schedule: {spec.describe()}; train split {n_train} images -> {per_epoch} steps/epoch, {total} steps")
    print(f"cpus {os.cpu_count()}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        problem = SupernetProblem.from_parts(space=space, data=data, supernet=net, target=get_target("jetson"),
                                             models_dir=Path(tmp), supernet_key="bench")  # fmt: skip
        projected = 0.0
        for name, cand in cands.items():
            x, y = data.split("train", cand.resolution)
            model = extract_calibrated(net, unpruned(cand), data)
            model = compress.prepare(model, cand, space, calibration=x[:2048] if any(cand.prune) else None)
            n = args.steps * spec.batch_size
            teacher = torch.randn(n, data.num_classes)  # the cost of the KD loss, not a teacher's values
            t0 = time.perf_counter()
            model, _ = compress.distill_epochs(model, x[:n], y[:n], spec=spec.model_copy(update={"epochs": 1}),
                                               teacher_logits=teacher)  # fmt: skip
            step_s = (time.perf_counter() - t0) / args.steps
            t1 = time.perf_counter()
            problem._deploy(model, cand, 0, Path(tmp) / "m.onnx", problem.predict(cand), finetune_s=0.0)
            deploy_s = time.perf_counter() - t1
            whole = step_s * total + deploy_s
            projected += whole
            print(f"{name:18s} {cand.describe()}\n    {1000 * step_s:.1f} ms/step over {args.steps} steps; deploy "
                  f"{deploy_s:.1f} s; projected finalize {whole / 60:.1f} min ({total} steps)", flush=True)  # fmt: skip
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
