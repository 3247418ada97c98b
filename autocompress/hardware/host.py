"""What this machine is (CPU model, threads, OS, runtime version): recorded in a measured
table's ``device.yaml`` and compared before a table is validated here.
"""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path

from autocompress import __version__
from autocompress.runtime import runtime_version


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu


def host_info(threads: int, runtime: str = "onnxruntime", cpus: list[int] | None = None) -> dict[str, object]:
    """The ``host`` section of a table measured here now."""
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "pinned_cpus": cpus or [],
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        runtime: runtime_version(runtime),
        "tool": f"autocompress {__version__} profile",
        "date": date.today().isoformat(),
    }
