"""Measure a sample of the RGB space's blocks into the x86 tables (this machine), without touching
their device.yaml: the blocks of the smallest and largest mobilenet_rgb networks at every
resolution of the space (64-224 px), of the smallest at 96 px with squeeze-excite or with
hard-swish, and of ``--random`` seeded random candidates at 64 and 96 px, at fp32 and int8.

    python benchmarks/rgb_profile_sample.py [--runtime onnxruntime] [--random 4] [--reps 30]

Measuring every block of the space (4,460 at 5 resolutions; 1,788 at 64-96 px) did not fit the
time this machine had (shared by six engineers; see benchmarks/README.md). With this sample each
block kind (stem hswish, mbconv, mbconv_se, relu/hswish, head on 3-channel inputs) has measured
rows on the x86 tables, so every other block is interpolated from measured rows of its own kind
(a least-squares fit on MACs and activation size; each search logs which blocks were).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.progress import Progress  # noqa: E402

from autocompress.arch import block_precisions, plan  # noqa: E402
from autocompress.hardware.profile_add import add_measured_rows  # noqa: E402
from autocompress.hardware.targets import DEFAULT_NAMES, get_target  # noqa: E402
from autocompress.space import load_space  # noqa: E402


def sample_pairs(n_random: int, seed: int = 0) -> list[tuple]:
    space = load_space("mobilenet_rgb")
    rng = random.Random(seed)
    cands = []
    for res in space.model.input.resolution:  # the extremes at every resolution: measured, not extrapolated
        cands += [replace(space.largest(), resolution=res), replace(space.smallest(), resolution=res)]
    for res in (64, 96):
        cands += [replace(space.random(rng), resolution=res) for _ in range(n_random // 2)]
    # the smallest network at 96 px with squeeze-excite (stages 2-5) or hard-swish (stages 3-5):
    # what tests/test_rgb_space.py compares, measured rather than interpolated
    small = replace(space.smallest(), resolution=96)
    for field, value, first in (("se", True, 2), ("act", "hswish", 3)):
        stages = tuple(replace(st, **{field: value}) if i >= first else st for i, st in enumerate(small.stages))
        cands.append(replace(small, stages=stages))
    pairs: dict[tuple, None] = {}
    for cand in cands:
        blocks = plan(cand, space, 3, 10)
        for prec in ("fp32", "int8"):
            for b in blocks:
                pairs[(replace(b, stage=0, index=0), prec)] = None
        # and the precisions the candidate itself runs (first/last layers stay fp32)
        for b, p in zip(blocks, block_precisions(cand, space, blocks)):
            pairs[(replace(b, stage=0, index=0), p)] = None
    return list(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", default="onnxruntime", choices=sorted(DEFAULT_NAMES))
    ap.add_argument("--random", type=int, default=4)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--passes", type=int, default=2)
    args = ap.parse_args()
    target = get_target(DEFAULT_NAMES[args.runtime])
    pairs = sample_pairs(args.random)
    start, loads = time.time(), [os.getloadavg()[0]]
    with Progress() as progress:
        task = progress.add_task(f"profiling {len(pairs)} block/precision pairs", total=len(pairs))
        table, added = add_measured_rows(
            target.folder, pairs, runtime=args.runtime, threads=int(target.device.host.get("threads", 1)),
            reps=args.reps, passes=args.passes,
            on_block=lambda d, t: progress.update(task, completed=d, total=t),
        )  # fmt: skip
    loads.append(os.getloadavg()[0])
    info = {"target": target.name, "pairs": len(pairs), "added": added, "wall_s": round(time.time() - start, 1),
            "load_avg_1min_start_end": loads, "reps": args.reps, "passes": args.passes}  # fmt: skip
    print(json.dumps(info))


if __name__ == "__main__":
    main()
