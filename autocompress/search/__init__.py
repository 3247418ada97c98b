"""The search: one Optuna multi-objective study (maximise accuracy, minimise latency and size)
with the latency budget as a hard constraint, for any problem (``autocompress.problems``).

``config`` (options and their rules), ``storage`` (where a study lives), ``study`` (run
directory, resume, seeding, warm start), ``trial`` (constraints, fidelity, twins), ``loop``
(the local ask/tell backend), ``ray_adapter`` (the Ray Tune backend), ``run`` (``run_search``).
"""

from __future__ import annotations

from autocompress.search.config import (
    DIRECTIONS,
    METRICS,
    SAMPLERS,
    Hooks,
    SearchConfig,
    SearchOutcome,
    make_sampler,
)
from autocompress.search.run import run_search

__all__ = ["DIRECTIONS", "METRICS", "SAMPLERS", "Hooks", "SearchConfig", "SearchOutcome", "make_sampler",
           "run_search"]  # fmt: skip
