"""Which GEMM tile makes the Jetson roofline predict held-out network families?

    python benchmarks/gemm_tile.py [--out benchmarks/results/gemm_tile.json]

For each estimated Jetson and each tile below (``none``: no tile quantisation, the model before
``roofline.gemm_tile``), refits the device's calibration exactly as ``autocompress calibrate``
does (``calibrate_device``) with only ``roofline.gemm_tile`` changed, and reports the in-sample
RMS error, the leave-one-out RMS error and the leave-one-family-out / leave-one-source-out
summaries. Nothing is written to ``hw_latency_tables``. About 10 minutes on 2 cores.

The shipped choice (128 x 128 on the tensor-core Jetsons, none on the Jetson Nano) was made from
this comparison, so the held-out errors it reports for that choice are somewhat optimistic.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autocompress.hardware.calibrate import calibrate_device  # noqa: E402
from autocompress.hardware.targets import get_target  # noqa: E402

JETSONS = ["jetson-agx-orin", "jetson-orin-nano", "jetson-orin-nx", "jetson-xavier-nx", "jetson-nano"]
TILES: list[tuple[int, int] | None] = [None, (32, 32), (64, 64), (128, 64), (128, 128), (256, 128), (128, 256)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gemm_tile.json")
    ap.add_argument("--devices", default=",".join(JETSONS))
    args = ap.parse_args()
    rows = []
    for name in args.devices.split(","):
        device = get_target(name).device
        assert device.roofline is not None
        for tile in TILES:
            roof = device.roofline.model_copy(update={"gemm_tile": tile})
            fit = calibrate_device(device.model_copy(update={"roofline": roof})).roofline.fit  # type: ignore[union-attr]
            assert fit is not None
            row = {"device": name, "tile": "none" if tile is None else f"{tile[0]}x{tile[1]}",
                   "rms_pct": fit.rms_error_pct, "loo_rms_pct": fit.loo_rms_error_pct,
                   "lofo": fit.held_out.get("leave_one_family_out"), "loso": fit.held_out.get("leave_one_source_out"),
                   "shipped": tile == device.roofline.gemm_tile}  # fmt: skip
            rows.append(row)
            print(f"{name:18s} {row['tile']:8s} in-sample {row['rms_pct']:5.1f}%  LOO {row['loo_rms_pct']:5.1f}%  "
                  f"LOFO {row['lofo']}  LOSO {row['loso']}{'  (shipped)' if row['shipped'] else ''}", flush=True)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
