"""Timing many models in passes (``runtime.measure_passes``): a model's fastest pass counts once
it is repeated, so a model timed only while the machine was slow is timed again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from autocompress import runtime
from autocompress.runtime import Timing, measure_passes

Speed = Callable[[int, str, list[str]], float]  # (group number, model, its group) -> how slow it runs then


def machine(monkeypatch: pytest.MonkeyPatch, base: dict[str, float], speed: Speed) -> list[list[str]]:
    """Replace the timer by a machine on which each model takes its ``base`` ms times how slow
    it runs while its group is timed; returns the groups in the order they were timed."""
    groups: list[list[str]] = []

    def fake(paths: list[Path], **_: object) -> list[Timing]:
        names = [p.name for p in paths]
        factors = [speed(len(groups), n, names) for n in names]
        groups.append(names)
        return [Timing(base[n] * f * 1.05, 0.01, base[n] * f, base[n] * f * 1.2, 50) for n, f in zip(names, factors)]

    monkeypatch.setattr(runtime, "measure_latency", fake)
    return groups


def timed(base: dict[str, float], **kw: object) -> dict[str, Timing]:
    names = list(base)
    out = measure_passes([Path(n) for n in names], [(1, 1, 8, 8)] * len(names), **kw)  # type: ignore[arg-type]
    return dict(zip(names, out, strict=True))


BASE = {f"m{i}": 0.05 * (i + 1) for i in range(8)}


def test_a_quiet_machine_costs_no_extra_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    groups = machine(monkeypatch, BASE, lambda k, *_: 1.0 + 0.01 * (k % 3))
    out = timed(BASE, passes=3, group=4)
    assert len(groups) == 3 * 2  # three passes of two groups, nothing re-timed
    assert all(t.repeated and t.passes == 3 for t in out.values())
    assert [t.p10_ms for t in out.values()] == pytest.approx(list(BASE.values()), rel=0.02)


def test_models_timed_only_while_the_machine_was_slow_are_timed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # the host is 1.7x slower for the whole first pass and the first group of the second
    groups = machine(monkeypatch, BASE, lambda k, *_: 1.7 if k < 3 else 1.0)
    out = timed(BASE, passes=3, group=4)
    late = set(groups[2])  # one fast pass only after three: re-timed until two agree
    assert [t.p10_ms for t in out.values()] == pytest.approx(list(BASE.values()))
    assert all(t.repeated for t in out.values())
    assert {n for n, t in out.items() if t.passes == 4} == late
    assert all(len(g) == 4 for g in groups)  # re-timed among as many models as before


def test_a_model_slow_in_every_pass_is_timed_again_even_when_its_slow_passes_agree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # whenever m3 was timed in the first three passes the host was slow, for all its group;
    # its three slow passes agree with each other, but its group-mates ran 1.7x their fastest then
    groups = machine(monkeypatch, BASE, lambda k, _, group: 1.7 if k < 6 and "m3" in group else 1.0)
    out = timed(BASE, passes=3, group=4)
    assert out["m3"].p10_ms == pytest.approx(BASE["m3"]) and out["m3"].repeated
    assert out["m3"].passes > 3 and len(groups) > 6


def test_timings_that_never_repeat_are_flagged_and_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # "noisy" never runs the same twice: each of its passes is 1.0-1.9x its own latency
    noisy = iter([1.0, 1.3, 1.6, 1.2, 1.45, 1.9])
    base = {"steady": 0.1, "noisy": 0.2}
    machine(monkeypatch, base, lambda k, name, _: next(noisy) if name == "noisy" else 1.0)
    with caplog.at_level(logging.WARNING):
        out = timed(base, passes=3, group=2, warn=True)  # as profile asks for it
    assert not out["noisy"].repeated and out["noisy"].passes == 6  # 3 passes + EXTRA_PASSES (3)
    assert out["noisy"].p10_ms == pytest.approx(0.2)  # still its fastest pass
    assert out["steady"].repeated
    assert "1 of 2 timings did not repeat within 5% in 6 passes" in caplog.text
    assert "quiet machine" in caplog.text
    caplog.clear()
    noisy = iter([1.0, 1.3, 1.6, 1.2, 1.45, 1.9])
    with caplog.at_level(logging.WARNING):
        timed(base, passes=3, group=2)  # the default: the caller reports it (search, validate-latency)
    assert "did not repeat" not in caplog.text


def test_without_confirmation_every_model_is_timed_exactly_passes_times(monkeypatch: pytest.MonkeyPatch) -> None:
    groups = machine(monkeypatch, BASE, lambda k, *_: 1.7 if k == 0 else 1.0)
    out = timed(BASE, passes=2, group=4, confirm=None)
    assert len(groups) == 4 and all(t.passes == 2 and t.repeated for t in out.values())
    assert [t.p10_ms for t in out.values()] == pytest.approx(list(BASE.values()))

