"""The search: one Optuna multi-objective study (maximise accuracy, minimise latency and size)
with the latency budget as a hard constraint, for any problem (``autocompress.problems``).

``config`` (options and their rules), ``storage`` (where a study lives), ``study`` (run
directory, resume, seeding, warm start), ``trial`` (constraints, fidelity, twins), ``loop``
(the local ask/tell backend), ``ray_adapter`` (the Ray Tune backend), ``run`` (``run_search``).

The names below are loaded on first use, so ``autocompress.search.storage`` (the CLI's input
checks) does not import torch: a typo in a flag is refused in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"DIRECTIONS": "config", "METRICS": "config", "SAMPLERS": "config", "Hooks": "config",
          "SearchConfig": "config", "SearchOutcome": "config", "make_sampler": "config", "run_search": "run"}  # fmt: skip

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
