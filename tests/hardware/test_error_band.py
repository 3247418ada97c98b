"""Error bands hold what they claim: ``interval.band_of`` takes order statistics of the held-out
errors (not interpolated percentiles), so at least 80% of them lie within the band and
``coverage`` is the share that does; ``describe_band`` states the count. The estimated (calibrate)
and the measured (validate-latency) paths both build their bands with it, and every shipped
table's band holds its own recorded held-out errors."""

from __future__ import annotations

import math
import random

import pytest

from autocompress.hardware.calibrate import BAND_MIN_FIGURES, error_bands
from autocompress.hardware.interval import band_of, describe_band, inside_count, network_band
from autocompress.hardware.lut import DeviceSpec, ErrorBand, load_device
from autocompress.hardware.targets import TABLES_DIR
from autocompress.hardware.validate import Point, Validation


def held(band: ErrorBand, errors: list[float]) -> int:
    return sum(band.lo_pct <= e <= band.hi_pct for e in errors)


def test_two_errors_give_their_whole_range() -> None:
    """raspberry-pi-4's case: two held-out errors; the old 10th-90th percentile band held neither."""
    band = band_of([-17.0, 22.4], "two figures")
    assert (band.lo_pct, band.hi_pct, band.n, band.coverage) == (-17.0, 22.4, 2, 1.0)
    assert inside_count(band) == 2
    text = describe_band(band)
    assert text.startswith("2 of 2 held-out errors within -17.0%..+22.4%") and "rough range" in text


@pytest.mark.parametrize("n", [1, 3, 4, 5, 6, 9, 10, 13, 19, 24, 26, 100])
def test_a_band_holds_at_least_80_percent_and_says_how_many(n: int) -> None:
    rng = random.Random(n)
    errors = [round(rng.gauss(5, 15), 2) for _ in range(n)]
    band = band_of(errors, "random", digits=1)
    inside = held(band, errors)
    assert inside >= math.ceil(0.8 * n) and inside_count(band) == inside and band.n == n
    assert band.coverage == pytest.approx(inside / n, abs=1e-4)
    if n < 10:  # nothing to drop from either tail at 80%: the lowest and the highest
        assert band.lo_pct <= min(errors) and band.hi_pct >= max(errors) and band.coverage == 1.0
    assert ("rough range" in describe_band(band)) == (n < 5)


def test_six_errors() -> None:
    errors = [-3.1, 1.7, 6.0, 11.2, 19.9, 25.8]
    band = band_of(errors, "six figures")
    assert held(band, errors) >= 5 and (band.lo_pct, band.hi_pct) == (-3.1, 25.8)
    assert describe_band(band).startswith("6 of 6 held-out errors within -3.1%..+25.8% (six figures)")


def test_ten_errors_drop_one_from_each_tail_and_round_outwards() -> None:
    errors = [-30.0, -4.04, -2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 7.06, 50.0]
    band = band_of(errors, "ten", digits=1)
    assert (band.lo_pct, band.hi_pct) == (-4.1, 7.1) and band.coverage == 0.8 and inside_count(band) == 8


def test_the_interval_of_a_prediction_holds_the_cases_it_claims() -> None:
    rng = random.Random(7)
    cases = [(p, p * (1 + rng.uniform(-0.25, 0.4))) for p in (rng.uniform(0.5, 50) for _ in range(12))]
    band = band_of([100 * (actual / pred - 1) for pred, actual in cases], "twelve")
    covered = 0
    for pred, actual in cases:
        lo, hi = band.interval(pred)
        covered += lo - 1e-9 <= actual <= hi + 1e-9
    assert covered == inside_count(band) >= math.ceil(0.8 * len(cases))


def test_validate_latency_band_holds_its_candidates() -> None:
    rng = random.Random(3)
    points = []
    for i in range(7):
        pred = rng.uniform(1, 10)
        points.append(Point(f"c{i}", "fp32", 1, pred, pred * rng.uniform(0.8, 1.3), pred, pred, 0))
    report = Validation("t", "onnxruntime", "1", "cpu", "cpu", 1, "fp32", "space", 0, 10, points=points)
    band = report.band()
    ratios = [100 * (p.measured_ms / p.predicted_ms - 1) for p in points]
    assert band.n == 7 and held(band, ratios) == 7 and band.coverage == 1.0


def test_a_mixed_network_states_what_its_widest_range_holds() -> None:
    fp32 = band_of([-5.0, 0.0, 5.0, 8.0, 9.0, 10.0], "fp32 figures")
    int8 = band_of([-20.0, *range(-9, 9), 40.0], "int8 figures")  # 20 errors, two dropped from each tail
    device = DeviceSpec.model_validate({**load_device(TABLES_DIR / "raspberry-pi-5" / "device.yaml").model_dump(),
                                        "error_band": {"fp32": fp32, "int8": int8}})  # fmt: skip
    band = network_band(device, ["fp32", "int8"])
    assert (int8.lo_pct, int8.hi_pct, inside_count(int8)) == (-8.0, 7.0, 16)
    assert band is not None and (band.lo_pct, band.hi_pct) == (-8.0, 10.0)
    assert (inside_count(band), band.n) == (16, 20)  # the least held share of either precision's errors


def test_a_mixed_network_takes_the_mixed_validations_band_where_one_is_recorded() -> None:
    """``validate-latency --precision mixed`` records a ``mixed`` band from held-out networks that
    mix precisions: those networks take it; one-precision networks keep their own."""
    fp32 = band_of([-5.0, 0.0, 5.0, 8.0, 9.0, 10.0], "fp32 figures")
    mixed = band_of([-3.0, -1.0, 0.0, 1.0, 2.0, 3.0], "mixed networks")
    device = DeviceSpec.model_validate({**load_device(TABLES_DIR / "raspberry-pi-5" / "device.yaml").model_dump(),
                                        "error_band": {"fp32": fp32, "mixed": mixed}})  # fmt: skip
    assert network_band(device, ["fp32", "int8"]) == mixed
    assert network_band(device, ["fp32", "fp32"]) == fp32
    assert network_band(device, ["int8"]) is None  # no int8 band and no all-precision one: nothing invented


def shipped_estimated() -> list[str]:
    return sorted(p.parent.name for p in TABLES_DIR.glob("*/device.yaml")
                  if load_device(p).source == "estimated")  # fmt: skip


@pytest.mark.parametrize("name", shipped_estimated())
def test_shipped_bands_hold_their_recorded_held_out_errors(name: str) -> None:
    """Each band of a shipped estimated table, against the held-out errors its device.yaml records
    (leave-one-family-out, or leave-one-figure-out for a single family), as a reader would check it;
    and calibrate's band function gives back the same band from those errors."""
    device = load_device(TABLES_DIR / name / "device.yaml")
    assert device.roofline is not None and device.error_band
    figs = device.roofline.calibration
    lofo = any(f.lofo_error_pct is not None for f in figs)
    recorded = [f.lofo_error_pct if lofo else f.loo_error_pct for f in figs]
    rebuilt = error_bands(figs, recorded, device.error_band["all"].basis)
    fields = ("lo_pct", "hi_pct", "coverage", "n")
    assert {k: b.model_dump(include=set(fields)) for k, b in rebuilt.items()} == \
        {k: b.model_dump(include=set(fields)) for k, b in device.error_band.items()}
    for key, band in device.error_band.items():
        errs = [100 / (1 + e / 100) - 100 for f, e in zip(figs, recorded, strict=True)
                if e is not None and key in ("all", f.precision)]  # fmt: skip
        assert len(errs) == band.n and (key == "all" or band.n >= BAND_MIN_FIGURES)
        inside = held(band, errs)
        assert inside >= math.ceil(0.8 * band.n) and inside == inside_count(band), (key, band)
