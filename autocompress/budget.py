"""Which latency budgets bind on a space: its predicted latency range on a target, and the one
line that says so when a search's budget excludes nothing (or everything).

A budget binds when it excludes a candidate of the space, i.e. when it is below the slowest
one's predicted latency; above that the search is plain accuracy-vs-size and the budget only
looks like a choice. Below the fastest one's, no trial can be feasible: a search says so before
its trials, and its report instead of suggesting more trials. The range comes from
the one pricing path (``arch.plan`` + ``hardware.predict``). Where the space has at most
``MAX_NETWORKS`` distinct priced networks (the choices latency depends on: architecture,
pruning ratio and precision per stage), every one is priced and the range is exact (table
lookups, each missing block interpolated once: measured 0.05-0.25 ms a network on a shared
2-core machine, 30-70 ms for the tiny space's 512, 1-2.4 s for 10,368). Beyond, it is
searched for at the space's extremes: the fastest candidate is a compression of the smallest
architecture and the slowest one of the largest; at both, every per-stage mix of pruning ratio
and precision is priced (neither need be monotone: each entry into int8 has a cost, and on a
measured table a pruned width can run slower than the unpruned one), the result is refined
one choice at a time, and the range is widened to cover the all-one-precision extremes found
the same way. That range is then only the fastest and slowest candidates found
(``LatencyRange.exact`` False), and says so.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from autocompress.arch import block_precisions, plan
from autocompress.hardware.lut import BlockKey, LatencyTable, Row
from autocompress.hardware.predict import predict
from autocompress.hardware.pricing import interpolate
from autocompress.hardware.roofline import block_latency_ms
from autocompress.space import Candidate, SearchSpace
from autocompress.units import format_ms

# distinct priced networks enumerated for an exact range (0.05-0.25 ms each measured: at most about
# 5 s); beyond, the range is searched for
MAX_NETWORKS = 20_000
# per-stage (pruning ratio, precision) mixes priced exactly; beyond, uniform ones only
MAX_MIXES = 4096
MAX_PASSES = 5  # one-choice-at-a-time refinement passes over the latency dimensions
_LATENCY_SUFFIXES = ("_depth", "_width", "_kernel", "_expand", "_se", "_act", "_prune", "_precision")


@dataclass(frozen=True)
class LatencyRange:
    """The fastest and slowest predicted latency (ms) of a space's candidates on a target."""

    min_ms: float
    max_ms: float
    target: str
    estimated: bool
    fastest: str = ""  # the candidates, as ``Candidate.describe`` (or the problem) names them
    slowest: str = ""
    exact: bool = False  # every candidate priced (else: the fastest and slowest found)

    def binds(self, budget_ms: float) -> bool:
        """Whether ``budget_ms`` excludes any candidate (it is below the slowest one)."""
        return budget_ms < self.max_ms

    def feasible(self, budget_ms: float) -> bool:
        """Whether some candidate is predicted within ``budget_ms`` (it is not below the fastest)."""
        return budget_ms >= self.min_ms

    def to_config(self, budget_ms: float) -> dict[str, Any]:
        """What a run's config.yaml records (``latency_range``)."""
        return {"min_ms": round(self.min_ms, 5), "max_ms": round(self.max_ms, 5),
                "binds": self.binds(budget_ms), "feasible": self.feasible(budget_ms),
                "estimated": self.estimated, "exact": self.exact}  # fmt: skip


@dataclass(frozen=True)
class PrecisionRange:
    """Smallest and largest network of a space, every stage in one precision."""

    precision: str
    in_space: bool  # the space offers it on every stage (else: what adding it would give)
    min_ms: float
    max_ms: float


def binding_budget(min_ms: float, max_ms: float) -> float:
    """A round budget between ``min_ms`` and ``max_ms`` (two significant figures, near the middle)."""
    mid = (min_ms + max_ms) / 2
    if mid <= 0:
        return mid
    step = 10 ** (math.floor(math.log10(mid)) - 1)
    return round(round(mid / step) * step, 12)


def non_binding_message(budget_ms: float, entry: dict[str, Any] | None, target: str) -> str | None:
    """The one line a CLI, report or explorer shows when a run's budget binds no candidate
    (``entry`` is the run's ``latency_range`` from config.yaml); None when it binds or the run
    recorded no range."""
    if not isinstance(entry, dict) or entry.get("binds", True) is not False:
        return None
    ends = _ends(entry)
    if ends is None:
        return None
    lo, hi = ends
    est = " (ESTIMATED)" if entry.get("estimated") else ""
    a, b = _bare(lo), _bare(hi)
    if entry.get("exact", True) is False:  # a range searched for: its slowest is the slowest found
        head = (f"budget {budget_ms:g} ms likely does not bind on {target}: the fastest and slowest candidates "
                f"found in this space are predicted {a}–{b} ms{est} (not every candidate was priced)")
    elif a == b:  # one candidate, or all priced alike: no budget trades anything
        return f"budget {budget_ms:g} ms does not bind on {target}: every candidate of this space is predicted {a} ms{est}"
    else:
        head = f"budget {budget_ms:g} ms does not bind on {target}: every candidate of this space is predicted {a}–{b} ms{est}"
    return f"{head}; a budget between {a} and {b} ms, e.g. {binding_budget(lo, hi):g} ms, would trade accuracy for latency"


def below_fastest_message(budget_ms: float, entry: dict[str, Any] | None, target: str, *,
                          when: str = "after") -> str | None:  # fmt: skip
    """The one line shown when a budget is below the space's fastest candidate (``entry`` as for
    :func:`non_binding_message`): ``when`` "before" the trials (a warning), "refused" (a search
    not started) or "after" them (CLI, report, explorer). None when some candidate fits or no
    range was recorded."""
    if not isinstance(entry, dict):
        return None
    ends = _ends(entry)
    if ends is None:
        return None
    lo = ends[0]
    fits = entry.get("feasible")
    if fits is True or (fits is None and budget_ms >= lo):
        return None
    est = " (ESTIMATED)" if entry.get("estimated") else ""
    exact = entry.get("exact", True) is not False
    found, likely = ("", "") if exact else (" found", "likely ")
    priced = "" if exact else "; not every candidate was priced"
    what = (f"no candidate{found} of this space is predicted under {format_ms(budget_ms)} on {target} "
            f"(the fastest{found}: {format_ms(lo)}{est}{priced})")
    raise_it = f"raise --budget to at least {_bare(lo)} ms"
    if when == "before":
        return f"{what}; the search will {likely}find nothing feasible — {raise_it}"
    if when == "refused":
        return f"{what}; a search would find nothing feasible, so none was started — {raise_it}"
    more = "more trials will not help" if exact else "more trials are unlikely to help"
    return f"budget {format_ms(budget_ms)} is below the fastest candidate: {what}; {more} — {raise_it}"


def budget_message(budget_ms: float, entry: dict[str, Any] | None, target: str, *, budget_on: str = "point",
                   band: dict[str, Any] | None = None) -> str | None:  # fmt: skip
    """The run's one line about its budget against its space's range: it binds no candidate, or
    it is below every one; None when it binds some and fits some (or no range was recorded).
    A ``budget_on`` "upper" run bounds the upper end of each interval: its budget is not said not
    to bind unless it is above the slowest prediction raised by the widest of the run's error
    ``band`` (config.yaml's ``latency_error_band``)."""
    ends = _ends(entry) if isinstance(entry, dict) else None
    if budget_on == "upper" and ends is not None and entry.get("binds") is False:  # type: ignore[union-attr]
        his = [float(b["hi_pct"]) for b in (band or {}).values() if isinstance(b, dict) and "hi_pct" in b]
        if not his or budget_ms < ends[1] * (1 + max(his) / 100):
            entry = {**entry, "binds": True}  # type: ignore[dict-item]
    return non_binding_message(budget_ms, entry, target) or below_fastest_message(budget_ms, entry, target)


def _ends(entry: dict[str, Any]) -> tuple[float, float] | None:
    try:
        return float(entry["min_ms"]), float(entry["max_ms"])
    except (KeyError, TypeError, ValueError):  # a hand-edited or older config: say nothing
        return None


def _bare(ms: float) -> str:
    """``format_ms`` without its unit (a range names it once)."""
    return format_ms(ms).removesuffix(" ms")


# --------------------------------------------------------------------------- supernet spaces


def space_latency_range(space: SearchSpace, table: LatencyTable, *, channels: int, classes: int,
                        batch: int = 1, target: str = "", estimated: bool = False) -> LatencyRange:  # fmt: skip
    """The predicted range over every precision mix the space offers on ``table``'s device: exact
    (every distinct network priced) up to ``MAX_NETWORKS`` networks, else the extremes found."""
    offered = _stage_precisions(space, table)
    table = _memo(table)
    ends = _enumerate(space, table, channels, classes, batch, offered)
    exact = ends is not None
    if ends is None:
        fastest = _best(space, table, channels, classes, batch, min, offered)
        slowest = _best(space, table, channels, classes, batch, max, offered)
        # the refinement stops at a local optimum: cover at least the all-one-precision extremes
        for prec in sorted({p for choices in offered for p in choices}):
            if all(prec in choices for choices in offered):
                only = [[prec]] * space.num_stages
                fastest = min(fastest, _best(space, table, channels, classes, batch, min, only), key=_ms)
                slowest = max(slowest, _best(space, table, channels, classes, batch, max, only), key=_ms)
        ends = fastest, slowest
    fastest, slowest = ends
    return LatencyRange(min_ms=fastest[0], max_ms=slowest[0], target=target or table.device.name,
                        estimated=estimated, fastest=fastest[1].describe(), slowest=slowest[1].describe(),
                        exact=exact)  # fmt: skip


def precision_ranges(space: SearchSpace, table: LatencyTable, *, channels: int, classes: int,
                     batch: int = 1) -> list[PrecisionRange]:  # fmt: skip
    """Per precision the device runs: the smallest network and the largest, every stage in that
    precision (the space's first/last policy kept), over the pruning ratios the space offers
    (every network priced where they are few, as for :func:`space_latency_range`)."""
    offered = _stage_precisions(space, table)
    table = _memo(table)
    rows = []
    for prec in table.device.precisions:
        only = [[prec]] * space.num_stages
        ends = _enumerate(space, table, channels, classes, batch, only) or (
            _best(space, table, channels, classes, batch, min, only),
            _best(space, table, channels, classes, batch, max, only),
        )
        rows.append(PrecisionRange(precision=prec, in_space=all(prec in choices for choices in offered),
                                   min_ms=ends[0][0], max_ms=ends[1][0]))  # fmt: skip
    return rows


def network_count(space: SearchSpace, precisions: list[list[str]]) -> int:
    """How many distinct priced networks the space holds with ``precisions`` per stage."""
    return math.prod(len(v) for v in _network_dims(space, precisions).values())


def _ms(priced: tuple[float, Candidate]) -> float:
    return priced[0]


def _network_dims(space: SearchSpace, precisions: list[list[str]]) -> dict[str, list[Any]]:
    """The choices a candidate's predicted latency depends on (the rest: distillation, fine-tune,
    calibration, QAT, do not change the deployed network)."""
    dims = {k: v for k, v in space.dimensions().items()
            if k in ("resolution", "stem_width") or k.endswith(_LATENCY_SUFFIXES)}  # fmt: skip
    for i in range(space.num_stages):
        dims[f"s{i}_precision"] = precisions[i]
    return dims


def _enumerate(space: SearchSpace, table: LatencyTable, channels: int, classes: int, batch: int,
               precisions: list[list[str]]) -> tuple[tuple[float, Candidate], tuple[float, Candidate]] | None:  # fmt: skip
    """The fastest and slowest of every distinct priced network (None beyond ``MAX_NETWORKS``)."""
    dims = _network_dims(space, precisions)
    if math.prod(len(v) for v in dims.values()) > MAX_NETWORKS:
        return None
    base = space.smallest().to_flat()
    names = list(dims)
    lo: tuple[float, Candidate] | None = None
    hi: tuple[float, Candidate] | None = None
    for values in itertools.product(*dims.values()):
        cand = Candidate.from_flat({**base, **dict(zip(names, values))})
        ms = _latency(space, table, cand, channels, classes, batch)
        if lo is None or ms < lo[0]:
            lo = (ms, cand)
        if hi is None or ms > hi[0]:
            hi = (ms, cand)
    assert lo is not None and hi is not None  # every dimension has a choice
    return lo, hi


def unsupported_precisions(space: SearchSpace, table: LatencyTable) -> list[str]:
    """Precisions the space offers that the device does not run (a search would be refused)."""
    dims = space.dimensions()
    used = {p for k, v in dims.items() if k.endswith("_precision") for p in v}
    return sorted(used - set(table.device.precisions))


def _stage_precisions(space: SearchSpace, table: LatencyTable) -> list[list[str]]:
    dims = space.dimensions()
    runs = set(table.device.precisions)
    return [[p for p in dims[f"s{i}_precision"] if p in runs] or ["fp32"] for i in range(space.num_stages)]


def _best(space: SearchSpace, table: LatencyTable, channels: int, classes: int, batch: int,
          pick: Any, precisions: list[list[str]]) -> tuple[float, Candidate]:  # fmt: skip
    """``pick`` (min or max) over the per-stage pruning ratios and ``precisions`` of the smallest
    (``min``) or largest (``max``) architecture."""
    dims = space.dimensions()
    stages = [[(r, p) for r in dims[f"s{i}_prune"] for p in precisions[i]] for i in range(space.num_stages)]
    if math.prod(len(c) for c in stages) <= MAX_MIXES:
        mixes = list(itertools.product(*stages))
    else:  # too many to price: the same ratio and precision on every stage
        common = set.intersection(*(set(c) for c in stages))
        mixes = [(rp,) * space.num_stages for rp in sorted(common)] or [tuple(c[0] for c in stages)]
    base = (space.largest() if pick is max else space.smallest()).to_flat()
    priced = []
    for mix in mixes:
        flat = dict(base)
        for i, (ratio, prec) in enumerate(mix):
            flat[f"s{i}_prune"], flat[f"s{i}_precision"] = ratio, prec
        cand = Candidate.from_flat(flat)
        priced.append((_latency(space, table, cand, channels, classes, batch), cand))
    best = pick(priced, key=lambda t: t[0])
    return _polish(space, table, channels, classes, batch, pick, best, precisions)


def _polish(space: SearchSpace, table: LatencyTable, channels: int, classes: int, batch: int, pick: Any,
            start: tuple[float, Candidate], precisions: list[list[str]]) -> tuple[float, Candidate]:  # fmt: skip
    """One choice at a time, while any change moves the latency ``pick``'s way: a measured
    table is noisy (a 5x5 kernel timed faster than a 3x3 one), so the extreme architecture is
    only nearly the extreme candidate."""
    dims = _network_dims(space, precisions)
    best_ms, best = start
    for _ in range(MAX_PASSES):
        improved = False
        for name, choices in dims.items():
            for value in choices:
                flat = best.to_flat()
                if flat[name] == value:
                    continue
                cand = Candidate.from_flat({**flat, name: value})
                ms = _latency(space, table, cand, channels, classes, batch)
                if pick(ms, best_ms) == ms and ms != best_ms:
                    best_ms, best, improved = ms, cand, True
        if not improved:
            break
    return best_ms, best


def _latency(space: SearchSpace, table: LatencyTable, cand: Candidate, channels: int, classes: int,
             batch: int) -> float:  # fmt: skip
    blocks = plan(cand, space, channels, classes)
    return predict(table, blocks, block_precisions(cand, space, blocks), batch=batch).latency_ms


class _Memo:
    """``table`` as ``predict`` reads it, with each missing block's interpolated latency kept once
    computed (against the table itself, so every price is the one ``predict`` gives): a range
    prices the same few blocks thousands of times, and interpolating one fits its family anew."""

    def __init__(self, table: LatencyTable) -> None:
        self.table, self.device, self.kind = table, table.device, table.kind
        dev = table.device
        self._estimate = None if dev.roofline is None else (lambda k: block_latency_ms(dev, k.spec(), k.precision))
        self._missing: dict[BlockKey, Row | None] = {}

    def get(self, key: BlockKey) -> Row | None:
        row = self.table.get(key)
        if row is not None:
            return row
        if key not in self._missing:
            ms = interpolate(self.table, key, self._estimate)
            self._missing[key] = None if ms is None else Row(key, ms, 0.0, None, "interpolated")
        return self._missing[key]

    def rows_like(self, key: BlockKey) -> list[Row]:
        return self.table.rows_like(key)


def _memo(table: LatencyTable | _Memo) -> Any:
    return table if isinstance(table, _Memo) else _Memo(table)
