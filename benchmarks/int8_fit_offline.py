"""How the re-calibration's int8 fit (``scale.fit_scales`` + ``scale.fit_int8``, as
``hardware/host_fit.py`` runs them) generalises, offline: no timing, only the CSVs that
``benchmarks/latency_accuracy.py`` writes.

    PYTHONPATH=. python benchmarks/int8_fit_offline.py [--results DIR] [--table DIR] [--trials 200]

The 3 x 100 validation networks (fp32, int8, mixed) were each timed twice on this machine (in
``here-<mode>.csv`` and ``other-recalibrated-<mode>.csv``). They are priced with the other
machine's ``--table`` at scale 1 (with the Q/DQ entry/exit costs of ``other-host-fit.json``);
then, ``--trials`` times, ``n`` networks per mode are drawn as the reference set, fitted as the
re-calibration fits them (on one of the two timings), and the fit is scored on the other
networks (on the other timing): share within ±10%, MAPE, Spearman, per mode.

Also printed: the *oracle*, the same model fitted on all the int8 and mixed networks and scored
on them (in-sample). No reference set can beat it: it is what the table's rows allow with this
model; below the goal there, the rows themselves (timed on the other machine) are what limits.
``--prior DEVICE_YAML`` adds the variant where the int8 terms are pulled toward that device's
terms rescaled by the fp32 factors (as ``host_fit.table_prior`` does with the table's own).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent
MODES = ("fp32", "int8", "mixed")
SOURCES = ("here", "other-recalibrated")


def parse(text: str):  # type: ignore[no-untyped-def]
    """A candidate back from ``Candidate.describe()``."""
    from autocompress.space import Candidate, StageChoice

    head, arch, comp, train = (p.strip() for p in text.split("|"))
    res, stem = head.split()
    stages = []
    for tok in arch.split():
        m = re.fullmatch(r"d(\d+)w(\d+)k(\d+)e([\d.]+)(se)?(hs)?", tok)
        assert m, tok
        stages.append(StageChoice(depth=int(m[1]), width=int(m[2]), kernel=int(m[3]), expand=float(m[4]),
                                  se=bool(m[5]), act="hswish" if m[6] else "relu"))  # fmt: skip
    parts = comp.split()
    pp = [x.split("/") for x in parts[0].split(",")]
    kd, ft = train.split()
    alpha, temp = kd[2:].split("/T")
    return Candidate(resolution=int(res[1:]), stem_width=int(stem[1:]), stages=tuple(stages),
                     prune=tuple(float(x[1]) for x in pp), precision=tuple(x[0] for x in pp),
                     kd_alpha=float(alpha), kd_temperature=float(temp), finetune_steps=int(ft[2:]),
                     calibration=parts[1] if len(parts) > 1 else "minmax", qat="qat" in parts)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from autocompress.arch import block_precisions, plan
    from autocompress.hardware.host_fit import table_prior, with_device
    from autocompress.hardware.lut import BlockKey, EdgeCost, load_device
    from autocompress.hardware.predict import predict
    from autocompress.hardware.scale import Timed, fit_int8, fit_scales, unit_scale
    from autocompress.hardware.targets import Target
    from autocompress.space import load_space

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "latency_accuracy")
    ap.add_argument("--table", type=Path, default=ROOT / "hw_latency_tables" / "x86-cpu-onnxruntime")
    ap.add_argument("--space", default="fashion_mnist")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--prior", type=Path, help="a device.yaml whose int8 terms serve as the prior")
    args = ap.parse_args(argv)

    space = load_space(args.space)
    dev = load_device(args.table / "device.yaml")
    hostfit = json.loads((args.results / "other-host-fit.json").read_text())
    fitted = dev.model_copy(update={"int8_entry": EdgeCost(**hostfit["int8_entry"]),
                                    "int8_exit": EdgeCost(**hostfit["int8_exit"])})  # fmt: skip
    unit = with_device(Target(folder=args.table, device=dev), unit_scale(fitted, "blocks")).table
    nets: dict[str, list[tuple[Timed, Timed]]] = {}
    for mode in MODES:
        measured: dict[str, dict[str, float]] = {}
        for src in SOURCES:
            with open(args.results / f"{src}-{mode}.csv") as fh:
                for row in csv.DictReader(fh):
                    measured.setdefault(row["candidate"], {})[src] = float(row["measured_ms"])
        for text, ms in measured.items():
            if len(ms) < 2:
                continue
            cand = parse(text)
            blocks = plan(cand, space, 1, 10)
            prec = block_precisions(cand, space, blocks)
            pred, keys = predict(unit, blocks, prec), [BlockKey.of(b, q) for b, q in zip(blocks, prec)]
            nets.setdefault(mode, []).append(tuple(Timed(pred, prec, ms[s], keys) for s in SOURCES))  # type: ignore[arg-type]
    prior_dev = load_device(args.prior) if args.prior else None

    def fit(ref: dict[str, list[Timed]], prior: bool):  # type: ignore[no-untyped-def]
        scales = fit_scales({"fp32": ref["fp32"], "int8": ref["int8"]})
        p = table_prior(prior_dev, scales) if prior and prior_dev is not None else None
        int8 = fit_int8([*ref["int8"], *ref["mixed"]], scales, p)
        assert int8 is not None
        scales["int8"] = int8.scale
        return fitted.model_copy(update={"block_scale": scales, **int8.terms(fitted)})

    def score(device, timed: list[Timed]) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
        from autocompress.hardware.pricing import price

        table = with_device(Target(folder=args.table, device=dev), device).table
        pred = np.array([price(device, table, list(t.keys)).latency_ms for t in timed])  # type: ignore[arg-type]
        meas = np.array([t.measured_ms for t in timed])
        err = pred / meas - 1
        return float(np.mean(np.abs(err) <= 0.1)), float(100 * np.mean(np.abs(err))), float(spearmanr(pred, meas)[0])

    def line(label: str, scores: dict[str, list[tuple[float, float, float]]]) -> str:
        cells = []
        for mode in MODES:
            a = np.array(scores[mode])
            cells.append(f"{mode} {100 * a[:, 0].mean():.1f}% / {a[:, 1].mean():.2f}% / {a[:, 2].mean():.4f}")
        return f"| {label} | " + " | ".join(cells) + " |"

    print(f"networks: {', '.join(f'{m} {len(v)}' for m, v in nets.items())}; cells: within ±10% / MAPE / Spearman")
    print("| fit | " + " | ".join(MODES) + " |\n|---|---|---|---|")
    both = {m: [t[0] for t in v] + [t[1] for t in v] for m, v in nets.items()}
    oracle = fit(both, False)
    print(line("oracle: fitted on all, in-sample", {m: [score(oracle, both[m])] for m in MODES}))
    variants = [("8 per mode", 8, False), ("16 per mode", 16, False)]
    if prior_dev is not None:
        variants += [("8 per mode + prior", 8, True), ("16 per mode + prior", 16, True)]
    for label, n, prior in variants:
        rng = np.random.default_rng(0)
        scores: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
        for t in range(args.trials):
            a, b = t % 2, 1 - t % 2  # fit on one timing, score on the other
            picks = {m: set(rng.choice(len(v), n, replace=False).tolist()) for m, v in nets.items()}
            device = fit({m: [v[i][a] for i in picks[m]] for m, v in nets.items()}, prior)
            for m, v in nets.items():
                scores[m].append(score(device, [x[b] for i, x in enumerate(v) if i not in picks[m]]))
        print(line(f"{label} ({args.trials} draws, held out)", scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
