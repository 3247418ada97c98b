"""The ``Problem`` seam: what differs between searching our supernet and compressing a user's model.

A problem samples, builds, evaluates, prices and describes candidates; the search
(:mod:`autocompress.search`) owns everything else (run directory, storage, resume, seeding,
warm start, heartbeat, fidelity, constraints, the local loop and the Ray adapter) and asks the
problem. Problems sit below the search and never import it.

Two halves:
- ``RunDescriber``: built from a finished run's ``config.yaml`` alone (no training, no user
  code imported), so export, report and explorer can turn a trials-table row back into a
  candidate and describe it.
- ``Problem``: the search-time half (data, trained weights, target); also a describer.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autocompress.hardware.pricing import Prediction
from autocompress.hardware.targets import Target
from autocompress.runtime import model_size

if TYPE_CHECKING:
    from autocompress.budget import LatencyRange
    from autocompress.schedule import FinalizeSpec


@dataclass(frozen=True)
class TrialResult:
    """What one evaluated candidate scored. Accuracies are the target runtime's on the exported
    file; ``params`` (weights with BatchNorm folded, whatever their precision) and ``macs`` are
    those of the final, pruned network."""

    val_accuracy: float
    test_accuracy: float
    latency_ms: float
    energy_mj: float | None
    size_bytes: int
    params: int
    macs: int
    interpolated_blocks: int
    model_path: str
    finetune_s: float
    eval_s: float
    accuracy_runtime: str = "onnxruntime"
    # int8 candidates: validation accuracy before int8 (the exported float file), the
    # post-training-quantization loss in percentage points, and whether QAT replaced PTQ
    float_val_accuracy: float | None = None
    ptq_drop_pp: float | None = None
    qat_val_accuracy: float | None = None
    qat_applied: bool = False
    # the range the predicted latency stands for, from the table's held-out error band (None
    # where the table records none: hardware/interval.py)
    latency_lo_ms: float | None = None
    latency_hi_ms: float | None = None
    latency_band: str | None = None  # the precisions whose bands gave it (``interval.band_key``)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of_deployed(cls, path: Path, *, accuracy: Callable[[Path, str], float], runtime: str, prediction: Prediction,
                    params: int, macs: int, finetune_s: float, eval_start: float,
                    quant: dict[str, Any], interval: tuple[float, float] | None = None,
                    band: str | None = None) -> TrialResult:  # fmt: skip
        """The result of a deployed file: its val/test accuracy by ``runtime`` (``accuracy(path,
        split)``), its size, and the candidate's predicted latency (with its ``interval``, when the
        table records a held-out error band, and the precisions whose ``band`` gave it) and geometry."""
        return cls(
            val_accuracy=accuracy(path, "val"),
            test_accuracy=accuracy(path, "test"),
            latency_ms=prediction.latency_ms,
            energy_mj=prediction.energy_mj,
            size_bytes=model_size(path),
            params=params,
            macs=macs,
            interpolated_blocks=prediction.interpolated,
            model_path=str(path),
            finetune_s=round(finetune_s, 2),
            eval_s=round(time.perf_counter() - eval_start, 2),
            accuracy_runtime=runtime,
            latency_lo_ms=None if interval is None else interval[0],
            latency_hi_ms=None if interval is None else interval[1],
            latency_band=None if interval is None else band,
            **quant,
        )


@dataclass
class ProblemHooks:
    """Progress callbacks a problem may call while it prepares (all optional)."""

    train_start: Callable[[bool], None] | None = None
    train_step: Callable[[int, int, float], None] | None = None
    profile_step: Callable[[int, int], None] | None = None  # (done, total) while layers are profiled at check
    host_fit_step: Callable[[int, int], None] | None = None  # (done, total) while the table is fitted to this host
    note: Callable[[str], None] | None = None  # one line for the user (e.g. the table comes from another machine)


class RunDescriber(ABC):
    """Turns trials-table rows of one run back into candidates and describes them."""

    kind: str

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    @abstractmethod
    def dimensions(self) -> dict[str, list[Any]]:
        """Every choice of the space and its values (one trials-table column each)."""

    @abstractmethod
    def candidate(self, flat: dict[str, Any]) -> Any:
        """The candidate a row's choice columns describe (SpaceError when a choice is missing)."""

    @abstractmethod
    def input_shape(self, cand: Any) -> tuple[int, int, int]:
        """(channels, height, width) the candidate's exported file takes."""

    @abstractmethod
    def parts(self, cand: Any) -> list[dict[str, Any]]:
        """One row per part of the network (stage or layer group): its choices."""

    def describe(self, cand: Any) -> dict[str, Any]:
        """Everything the report, the model card and the explorer show about a candidate."""
        return {
            "kind": self.kind,
            "summary": cand.describe(),
            "choices": cand.to_flat(),
            "input_shape": list(self.input_shape(cand)),
            "kd": {"alpha": cand.kd_alpha, "temperature": cand.kd_temperature,
                   "finetune_steps": cand.finetune_steps},  # fmt: skip
            "parts": self.parts(cand),
        }

    def row_candidate(self, row: Any) -> Any:
        """The candidate of a trials-table row (a pandas Series or a dict)."""
        dims = self.dimensions()
        return self.candidate({k: _plain(row[k]) for k in dims if k in row})


class Problem(RunDescriber):
    """The search-time half. The search calls, in order: ``check`` (before the run directory
    exists: bad input fails with nothing written), ``prepare`` (heavy: training, baselines),
    then ``sample`` / ``evaluate`` per trial; ``recipe`` rebuilds the problem in a Ray worker."""

    target: Target  # the device + runtime whose tables price candidates
    space: Any  # the problem's space: sample(trial), largest(), smallest(), dimensions()

    @abstractmethod
    def fingerprint(self) -> str:
        """What must match for ``--resume`` to continue a study (space, weights, data)."""

    def family_note(self) -> str | None:
        """On an estimated target whose calibration holds no published figure of the network's
        family (``hardware.families.uncovered_note``), the line every result shows beside the
        estimate; None otherwise (after ``check``)."""
        return None

    @abstractmethod
    def check(self, hooks: ProblemHooks | None = None) -> None:
        """Refuse, before anything is written, what this problem cannot do on its target (a
        problem may also complete its target's tables here, reporting through ``hooks``)."""

    @abstractmethod
    def prepare(self, models_dir: Path, hooks: ProblemHooks | None = None) -> dict[str, Any]:
        """Heavy set-up (train or load weights, export baselines); returns config entries."""

    @abstractmethod
    def attach(self, models_dir: Path) -> None:
        """Light set-up in a worker process: what ``prepare`` made is there already (cached
        weights, baselines); fail if it is not instead of redoing it."""

    def sample(self, trial: Any) -> Any:
        """A candidate from an Optuna trial (``trial.suggest_categorical`` per dimension)."""
        return self.space.sample(trial)

    def largest(self) -> Any:
        """The reference candidate (the teacher): nothing removed, full precision."""
        return self.space.largest()

    def smallest(self) -> Any:
        """The most compressed candidate."""
        return self.space.smallest()

    @abstractmethod
    def contains(self, cand: Any) -> bool:
        """Whether the space can express ``cand`` (warm start from another run)."""

    @abstractmethod
    def predict(self, cand: Any) -> Prediction:
        """Latency and energy on the target, with the per-entry breakdown."""

    # whether ``latency_range`` after ``check`` is what the trials are priced with (a problem whose
    # ``prepare`` rescales the target says False: a budget below its range is then only warned of)
    range_final_after_check: bool = True

    @abstractmethod
    def latency_range(self) -> LatencyRange:
        """The fastest and slowest predicted latency of the space's candidates on the target
        (after ``check``; after ``prepare`` where it rescales the target): which budgets bind."""

    @abstractmethod
    def evaluate(self, cand: Any, number: int) -> TrialResult:
        """Score ``cand`` for real; writes ``models/trial_NNNN.onnx``."""

    @abstractmethod
    def finalize_spec(self) -> FinalizeSpec:
        """The space's finalize schedule (its ``finalize:`` section, defaults where absent)."""

    @abstractmethod
    def finalize(self, cand: Any, number: int, *, checkpoint: Path,
                 on_step: Callable[[int, int], None] | None = None) -> tuple[TrialResult, int]:  # fmt: skip
        """The finalize phase for one candidate: rebuild its network as ``evaluate`` does, train it
        by ``finalize_spec()`` with distillation from the largest network (starting from
        ``checkpoint`` when it holds one; a checkpoint per epoch), then the same deploy step and
        measurement as ``evaluate``; writes ``models/final_NNNN.onnx``. Returns the result and
        the epoch the training resumed from (0: a fresh start)."""

    @abstractmethod
    def recipe(self) -> dict[str, Any]:
        """Picklable arguments that rebuild this problem in another process (Ray workers)."""

    @abstractmethod
    def config_entries(self) -> dict[str, Any]:
        """What the run's config.yaml records about the problem (space, data set, model, ...)."""


def _plain(v: Any) -> Any:
    """numpy/pandas scalars as plain Python."""
    return v.item() if hasattr(v, "item") else v
