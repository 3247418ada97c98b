"""How much longer finalize training buys, per candidate, on a finished run.

    python benchmarks/finalize_epochs.py RUN_DIR --trials 1,2 --epochs 1,3,6

For every epoch count, copies the run, sets its space's ``finalize.epochs`` to that count, and
finalizes the given trials exactly as ``autocompress finalize`` does one candidate
(``search.finalize._finalize_one``). That means distillation from the largest network, the
deploy step (PTQ, then QAT if PTQ loses too much), and ONNX Runtime accuracy on val and test.
The teacher is not retrained, so each count costs only its candidates. It prints and writes
(``results/finalize_epochs.json``), per trial and epoch count:
- the search's and the finalized val and test accuracy;
- the wall time, load average beside it;
- whether finalize kept the search's file.

The run needs its supernet in the cache (``AUTOCOMPRESS_CACHE`` of the search).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from autocompress.problems import ProblemHooks  # noqa: E402
from autocompress.results import load_run  # noqa: E402
from autocompress.search.finalize import FinalizeHooks, _finalize_one, problem_of  # noqa: E402


def finalize_with(run: Path, work: Path, epochs: int, numbers: list[int]) -> list[dict]:
    copy = work / f"e{epochs}"
    shutil.copytree(run, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    space = yaml.safe_load(Path(cfg["space_path"]).read_text())
    space["finalize"]["epochs"] = epochs
    (copy / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    cfg["space_path"] = str(copy / "space.yaml")
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    config, trials = load_run(copy)
    problem = problem_of(config)  # refuses a space whose architecture changed (fingerprint)
    problem.check()
    problem.prepare(copy / "models", ProblemHooks())
    spec = problem.finalize_spec()
    schedule = spec.model_dump(mode="json", exclude={"top"})
    rows, out = trials.set_index("number"), []
    for n in numbers:
        t0 = time.perf_counter()
        state = _finalize_one(problem, copy, rows.loc[n], n, "candidate", schedule, spec.describe(), None,
                              FinalizeHooks())  # fmt: skip
        r, s = state["result"], state["search"]
        row = {"trial": n, "candidate": str(rows.loc[n, "candidate"]), "epochs": epochs,
               "seconds": round(time.perf_counter() - t0, 1), "load": round(os.getloadavg()[0], 2),
               "state": state["state"], "size_bytes": int(rows.loc[n, "size_bytes"]),
               "search_val": s["val_accuracy"], "search_test": s["test_accuracy"],
               "final_val": r["val_accuracy"], "final_test": r["test_accuracy"]}  # fmt: skip
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--trials", required=True, help="N,N,...")
    ap.add_argument("--epochs", default="1,3,6", help="epoch counts, e.g. 1,3,6")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "finalize_epochs.json")
    args = ap.parse_args()
    numbers = [int(n) for n in args.trials.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="finalize-epochs-") as work:
        for epochs in (int(e) for e in args.epochs.split(",")):
            rows += finalize_with(args.run.resolve(), Path(work), epochs, numbers)
    teacher = load_run(args.run)[1].set_index("number")
    t0 = teacher.loc[0] if 0 in teacher.index else None
    result = {"run": str(args.run), "teacher_test": None if t0 is None else float(t0["test_accuracy"]),
              "teacher_size_bytes": None if t0 is None else int(t0["size_bytes"]), "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
