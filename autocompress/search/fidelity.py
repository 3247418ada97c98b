"""Multi-fidelity: successive halving over a candidate's fine-tune steps.

Optuna's pruners do not run on multi-objective studies (``Trial.should_prune`` raises), so
the halving is done here, inside one trial:

1. The candidate is fine-tuned for ``ceil(steps / eta)`` of its chosen ``finetune_steps``
   (the low rung), exported, quantized and scored as usual.
2. It is promoted to its full fine-tune only if it meets every hard limit (latency, size:
   these do not depend on fine-tuning, so an over-budget candidate never costs a full
   fine-tune) and its low-rung validation accuracy is among the best ``1/eta`` of the
   feasible low-rung results the study holds so far (its own included). The first ``eta``
   feasible candidates are promoted unconditionally, so the front fills from the start.
3. Candidates whose chosen ``finetune_steps`` is too small to have a lower rung (0 steps,
   or ``ceil(steps / eta) == steps``) are evaluated once, at full fidelity.

Every reported accuracy carries its ``fidelity`` (``full`` or ``low``) and the fine-tune
steps it was measured after (``trained_steps``); the Pareto set uses full-fidelity trials only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

FIDELITIES = ("full", "halving")


@dataclass(frozen=True)
class Halving:
    eta: int = 3

    def low_steps(self, full_steps: int) -> int | None:
        """Fine-tune steps of the low rung, or None when the candidate has no lower rung."""
        low = math.ceil(full_steps / self.eta)
        return low if 0 < low < full_steps else None

    def promote(self, acc: float, rung: Iterable[float]) -> bool:
        """Whether a feasible low-rung accuracy is in the top 1/eta of the rung (itself included)."""
        scores = sorted([*rung, acc], reverse=True)
        if len(scores) <= self.eta:
            return True
        keep = max(1, len(scores) // self.eta)
        return acc >= scores[keep - 1]


def evaluate_at_fidelity(
    evaluate: Callable[[Any], dict[str, Any]],
    cand: Any,
    *,
    halving: Halving | None,
    feasible: Callable[[dict[str, Any]], bool],
    rung: Callable[[], list[float]],
) -> dict[str, Any]:
    """Score a candidate at full fidelity, or by successive halving when ``halving`` is given.

    Args:
        evaluate: candidate (with the fine-tune steps to run) -> result dict.
        feasible: whether a result meets the hard limits.
        rung: the feasible low-rung validation accuracies of the study's other trials.
    """
    low = halving.low_steps(cand.finetune_steps) if halving else None
    if low is None:
        return {**evaluate(cand), "fidelity": "full", "trained_steps": cand.finetune_steps,
                "low_val_accuracy": None, "low_steps": None}  # fmt: skip
    short = evaluate(replace(cand, finetune_steps=low))
    info = {"low_val_accuracy": short["val_accuracy"], "low_steps": low}
    assert halving is not None
    if feasible(short) and halving.promote(short["val_accuracy"], rung()):
        return {**evaluate(cand), "fidelity": "full", "trained_steps": cand.finetune_steps, **info}
    return {**short, "fidelity": "low", "trained_steps": low, **info}

