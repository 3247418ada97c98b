"""Which latency budgets bind on a space: its predicted latency range on a target, and the one
line that says so when a search's budget excludes nothing.

A budget binds when it excludes a candidate of the space, i.e. when it is below the slowest
one's predicted latency; above that the search is plain accuracy-vs-size and the budget only
looks like a choice. The range comes from the one pricing path (``arch.plan`` +
``hardware.predict``) at the space's extremes: latency grows with every architecture choice
(resolution, width, depth, kernel, expand), so the fastest candidate is a compression of the
smallest architecture and the slowest one of the largest; at both, every per-stage mix of
pruning ratio and precision is priced, since neither need be monotone (each entry into int8
has a cost; on a measured table a pruned width can run slower than the unpruned one), and
the result is refined one choice at a time (a measured table's noise can make a larger
choice time faster). The range is therefore the fastest and slowest candidates found, exact
wherever latency is monotone in the architecture.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from autocompress.arch import block_precisions, plan
from autocompress.hardware.lut import LatencyTable
from autocompress.hardware.predict import predict
from autocompress.space import Candidate, SearchSpace
from autocompress.units import format_ms

# per-stage (pruning ratio, precision) mixes priced exactly; beyond, uniform ones only
MAX_MIXES = 4096
MAX_PASSES = 5  # one-choice-at-a-time refinement passes over the latency dimensions
_LATENCY_SUFFIXES = ("_depth", "_width", "_kernel", "_expand", "_prune", "_precision")


@dataclass(frozen=True)
class LatencyRange:
    """The fastest and slowest predicted latency (ms) of a space's candidates on a target."""

    min_ms: float
    max_ms: float
    target: str
    estimated: bool
    fastest: str = ""  # the candidates, as ``Candidate.describe`` (or the problem) names them
    slowest: str = ""

    def binds(self, budget_ms: float) -> bool:
        """Whether ``budget_ms`` excludes any candidate (it is below the slowest one)."""
        return budget_ms < self.max_ms

    def to_config(self, budget_ms: float) -> dict[str, Any]:
        """What a run's config.yaml records (``latency_range``)."""
        return {"min_ms": round(self.min_ms, 5), "max_ms": round(self.max_ms, 5),
                "binds": self.binds(budget_ms), "estimated": self.estimated}  # fmt: skip


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
    try:
        lo, hi = float(entry["min_ms"]), float(entry["max_ms"])
    except (KeyError, TypeError, ValueError):  # a hand-edited or older config: say nothing
        return None
    est = " (ESTIMATED)" if entry.get("estimated") else ""
    a, b = _bare(lo), _bare(hi)
    return (
        f"budget {budget_ms:g} ms does not bind on {target}: every candidate of this space is predicted "
        f"{a}–{b} ms{est}; a budget between {a} and {b} ms, e.g. {binding_budget(lo, hi):g} ms, "
        "would trade accuracy for latency"
    )


def _bare(ms: float) -> str:
    """``format_ms`` without its unit (a range names it once)."""
    return format_ms(ms).removesuffix(" ms")


# --------------------------------------------------------------------------- supernet spaces


def space_latency_range(space: SearchSpace, table: LatencyTable, *, channels: int, classes: int,
                        batch: int = 1, target: str = "", estimated: bool = False) -> LatencyRange:  # fmt: skip
    """The predicted range over every precision mix the space offers on ``table``'s device."""
    offered = _stage_precisions(space, table)
    fastest = _best(space, table, channels, classes, batch, min, offered)
    slowest = _best(space, table, channels, classes, batch, max, offered)
    return LatencyRange(min_ms=fastest[0], max_ms=slowest[0], target=target or table.device.name,
                        estimated=estimated, fastest=fastest[1].describe(), slowest=slowest[1].describe())  # fmt: skip


def precision_ranges(space: SearchSpace, table: LatencyTable, *, channels: int, classes: int,
                     batch: int = 1) -> list[PrecisionRange]:  # fmt: skip
    """Per precision the device runs: the smallest network and the largest, every stage in that
    precision (the space's first/last policy kept), over the pruning ratios the space offers."""
    offered = _stage_precisions(space, table)
    rows = []
    for prec in table.device.precisions:
        only = [[prec]] * space.num_stages
        rows.append(PrecisionRange(
            precision=prec, in_space=all(prec in choices for choices in offered),
            min_ms=_best(space, table, channels, classes, batch, min, only)[0],
            max_ms=_best(space, table, channels, classes, batch, max, only)[0],
        ))  # fmt: skip
    return rows


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
    dims = {k: v for k, v in space.dimensions().items()
            if k in ("resolution", "stem_width") or k.endswith(_LATENCY_SUFFIXES)}  # fmt: skip
    for i in range(space.num_stages):
        dims[f"s{i}_precision"] = precisions[i]
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
