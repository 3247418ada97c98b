"""The target registry: every folder of ``hw_latency_tables/`` (and ``$AUTOCOMPRESS_TABLES``)
is a target, found by name or alias; an unknown name suggests the nearest ones.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from autocompress.exceptions import TargetError
from autocompress.hardware.lut import DeviceSpec, LatencyTable, load_device, load_table

TABLES_DIR = Path(__file__).resolve().parents[2] / "hw_latency_tables"


def table_dirs() -> list[Path]:
    """Folders searched for target tables: ``$AUTOCOMPRESS_TABLES`` (os.pathsep-separated) first."""
    extra = [Path(p) for p in os.environ.get("AUTOCOMPRESS_TABLES", "").split(os.pathsep) if p]
    return [*extra, TABLES_DIR]


@dataclass
class Target:
    """A device + runtime whose latency the search predicts from a lookup table."""

    folder: Path
    device: DeviceSpec

    @property
    def name(self) -> str:
        return self.device.name

    @property
    def estimated(self) -> bool:
        return self.device.source == "estimated"

    @cached_property
    def table(self) -> LatencyTable:
        return load_table(self.folder)

    @property
    def source_label(self) -> str:
        """How a figure from this target must be labelled wherever it is shown."""
        d = self.device
        if d.source == "measured":
            host = d.host
            threads = host.get("threads")
            bits = [f"{d.runtime} {d.runtime_version}".strip(), host.get("cpu", "")]
            if threads:
                bits.append(f"{threads} thread{'s' if threads != 1 else ''}")
            return "measured (" + ", ".join(b for b in bits if b) + ")"
        if d.source == "published":
            return "published"
        n = d.roofline.calibration_figures() if d.roofline else 0
        cal = f"calibrated on {n} published figure{'s' if n != 1 else ''}" if n else "uncalibrated"
        return f"estimated (roofline model, {cal}; not measured on the device)"


def list_targets() -> list[Target]:
    """Every target found, first folder wins on a name clash."""
    found: dict[str, Target] = {}
    for root in table_dirs():
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / "device.yaml").is_file()):
            device = load_device(folder / "device.yaml")
            found.setdefault(device.name, Target(folder=folder, device=device))
    return list(found.values())


def get_target(name: str) -> Target:
    """Look a target up by name or alias (case-insensitive).

    Raises:
        TargetError: unknown name, with the closest names as suggestions.
    """
    targets = list_targets()
    wanted = name.strip().lower()
    for t in targets:
        if wanted == t.name.lower() or wanted in (a.lower() for a in t.device.aliases):
            return t
    names = [t.name for t in targets] + [a for t in targets for a in t.device.aliases]
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    known = ", ".join(sorted(t.name for t in targets))
    raise TargetError(f"unknown target {name!r}{hint} (known: {known}; see 'autocompress targets')")
