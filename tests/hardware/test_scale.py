"""A table moved to another machine: its per-inference overhead is fitted with its factor, so
small networks are not predicted too fast and large ones too slow (``scale.fit_overhead``)."""

from __future__ import annotations

import numpy as np
import pytest

from autocompress.hardware.pricing import EntryCost, Prediction
from autocompress.hardware.scale import Timed, fit_overhead, fit_scales, with_overhead

TABLE_OVERHEAD = 0.0026  # what the table says (ms): the machine it was profiled on
HERE_OVERHEAD, HERE_SCALE = 0.012, 0.8  # what this machine does


def _networks(n: int, seed: int = 0, noise: float = 0.02) -> list[Timed]:
    """``n`` all-fp32 networks of 2-9 blocks (0.02-0.2 ms of rows), timed as this machine runs them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        rows = [float(rng.uniform(0.004, 0.025)) for _ in range(int(rng.integers(2, 10)))]
        pred = Prediction(TABLE_OVERHEAD + sum(rows), None, tuple(EntryCost("b", r, None, False) for r in rows),
                          TABLE_OVERHEAD, 0.0)  # fmt: skip
        measured = (HERE_OVERHEAD + HERE_SCALE * sum(rows)) * float(1 + noise * rng.standard_normal())
        out.append(Timed(pred, ["fp32"] * len(rows), measured))
    return out


def _within10(nets: list[Timed], overhead: float, scale: float) -> float:
    pred = np.array([overhead + scale * sum(c.latency_ms for c in n.prediction.breakdown) for n in nets])
    return float(np.mean(np.abs(pred / np.array([n.measured_ms for n in nets]) - 1) <= 0.10))


def test_the_overhead_and_factor_of_this_machine_are_recovered() -> None:
    fitted = fit_overhead(_networks(16))
    assert fitted is not None
    overhead, scale = fitted
    assert overhead == pytest.approx(HERE_OVERHEAD, abs=0.003) and scale == pytest.approx(HERE_SCALE, rel=0.08)


def test_networks_held_out_are_predicted_better_than_with_the_factor_alone() -> None:
    train, held_out = _networks(16, seed=1), _networks(100, seed=2)
    factor_alone = fit_scales({"fp32": train})["fp32"]
    overhead, scale = fit_overhead(train)  # type: ignore[misc]
    # the other fits read the predictions with the fitted overhead: the factor comes out the same
    assert fit_scales({"fp32": with_overhead(train, overhead)})["fp32"] == pytest.approx(scale, abs=2e-4)
    assert _within10(held_out, TABLE_OVERHEAD, factor_alone) < 0.8
    assert _within10(held_out, overhead, scale) >= 0.95


def test_too_few_or_too_alike_networks_keep_the_tables_overhead() -> None:
    assert fit_overhead(_networks(5)) is None
    same = _networks(8, noise=0.0)
    alike = [Timed(Prediction(0.05, None, (EntryCost("b", 0.05, None, False),), 0.0026, 0.0), ["fp32"], 0.05)
             for _ in same]  # fmt: skip
    assert fit_overhead(alike) is None
    mixed = [Timed(n.prediction, ["int8"] * len(n.precisions), n.measured_ms) for n in _networks(10)]
    assert fit_overhead(mixed) is None  # only all-fp32 networks say what a fixed cost is
