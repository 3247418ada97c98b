"""The int8 terms (link, residual, region) of a table re-calibrated on another machine: with a few
reference networks they stay near the table's own terms rescaled to this machine (the prior); with
many they follow what the networks measure; a table without terms is fitted from the data alone."""

from __future__ import annotations

import numpy as np

from autocompress.arch import BlockSpec
from autocompress.hardware.host_fit import table_prior
from autocompress.hardware.lut import BlockKey, DeviceSpec
from autocompress.hardware.pricing import EntryCost, Prediction, int8_regions, residuals
from autocompress.hardware.scale import Timed, fit_int8

TRUE = {"link_ms": -0.002, "residual_ms": 0.006, "region_ms": -0.001}  # what this machine does
PRIOR = {"link_ms": -0.004, "residual_ms": 0.003, "region_ms": -0.003}  # what the table says, rescaled
SCALE = 0.8


def _networks(n: int, seed: int) -> list[Timed]:
    """``n`` random 3-7 block networks, all-int8 or mixed, timed as TRUE prices them (2% noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        blocks = []
        for _ in range(int(rng.integers(3, 8))):
            c = int(rng.choice([16, 24, 32]))
            same = rng.random() < 0.5
            blocks.append(BlockSpec("mbconv", 8, 8, c, c if same else c + 8, 3, 1, 4.0, "relu", 0))
        prec = ["int8" if rng.random() < 0.7 else "fp32" for _ in blocks]
        keys = [BlockKey.of(b, q) for b, q in zip(blocks, prec)]
        rows = [float(rng.uniform(0.01, 0.08)) for _ in blocks]
        pred = Prediction(0.01 + sum(rows), None, tuple(EntryCost("b", r, None, False) for r in rows), 0.01, 0.0)
        regions = int8_regions(prec)
        measured = 0.01 + sum(r * (SCALE if q == "int8" else 1.0) for r, q in zip(rows, prec))
        measured += sum(TRUE["region_ms"] + TRUE["link_ms"] * (b - a) + TRUE["residual_ms"] * residuals(keys[a : b + 1])
                        for a, b in regions)  # fmt: skip
        out.append(Timed(pred, prec, measured * float(1 + 0.02 * rng.standard_normal()), keys))
    return [t for t in out if int8_regions(list(t.precisions))]


def _terms(fit) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {"link_ms": fit.link_ms, "residual_ms": fit.residual_ms, "region_ms": fit.region_ms}


def _dist(a: dict[str, float], b: dict[str, float]) -> float:
    return float(np.sqrt(sum((a[k] - b[k]) ** 2 for k in a)))


def test_with_few_networks_the_terms_stay_near_the_tables_and_with_many_they_follow_the_data() -> None:
    few, many = _networks(8, seed=1), _networks(600, seed=2)
    free_few = fit_int8(few, {"fp32": 1.0})
    near = fit_int8(few, {"fp32": 1.0}, PRIOR)
    assert free_few is not None and near is not None
    # few: pulled well toward the prior (the prior counts as 4 networks against these 8)
    assert _dist(_terms(near), PRIOR) < 0.7 * _dist(_terms(free_few), PRIOR)
    # many: the data win, whatever the prior says
    far = fit_int8(many, {"fp32": 1.0}, PRIOR)
    assert far is not None
    assert _dist(_terms(far), TRUE) < 0.25 * _dist(TRUE, PRIOR)
    assert abs(far.scale - SCALE) < 0.02
    # no prior (a table without terms): the plain least squares, unchanged
    plain = fit_int8(many, {"fp32": 1.0})
    assert plain is not None and _dist(_terms(plain), TRUE) < 0.25 * _dist(TRUE, PRIOR)


def test_the_prior_is_the_tables_terms_rescaled_by_the_machines_fp32_factors() -> None:
    dev = DeviceSpec(name="t", description="test", source="measured", runtime="onnxruntime",
                     precisions=["fp32", "int8"], overhead_ms=0.01, transition_ms=0.0, block_scale={"fp32": 0.9, "int8": 0.95},
                     int8_link_ms={"blocks": -0.003}, int8_residual_ms={"blocks": 0.006},
                     int8_region_ms={"blocks": -0.003})  # type: ignore[arg-type]  # fmt: skip
    prior = table_prior(dev, {"fp32": 0.45, "int8": 0.5})  # this machine is twice as fast
    assert prior is not None
    assert np.allclose([prior["link_ms"], prior["residual_ms"], prior["region_ms"]], [-0.0015, 0.003, -0.0015])
    bare = dev.model_copy(update={"int8_link_ms": {}, "int8_residual_ms": {}, "int8_region_ms": {}})
    assert table_prior(bare, {"fp32": 0.45}) is None
