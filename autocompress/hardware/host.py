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


def machine_id() -> str:
    """This machine since its last boot, as 12 hex digits (a hash of ``/etc/machine-id``, the host
    name and the kernel's boot id; nothing identifying is stored). Virtual machines cloned from one
    image share a CPU model string and often a machine-id, yet time differently (another physical
    host, other neighbours): only the boot id tells them apart."""
    import hashlib
    import socket

    parts = [socket.gethostname()]
    for path in ("/etc/machine-id", "/proc/sys/kernel/random/boot_id"):
        try:
            parts.append(Path(path).read_text().strip())
        except OSError:
            parts.append("")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def host_info(threads: int, runtime: str = "onnxruntime", cpus: list[int] | None = None) -> dict[str, object]:
    """The ``host`` section of a table measured here now."""
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "pinned_cpus": cpus or [],
        "machine": machine_id(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        runtime: runtime_version(runtime),
        "tool": f"autocompress {__version__} profile",
        "date": date.today().isoformat(),
    }
