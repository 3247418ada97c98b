"""The target registry: every folder of the shipped tables (and of ``$AUTOCOMPRESS_TABLES`` and
the user tables folder ``<cache>/tables``, searched first, in that order) is a target, found by
name or alias; an unknown name suggests the nearest ones.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from autocompress._io import ensure_writable_dir
from autocompress._resources import is_shipped, tables_dir
from autocompress.exceptions import BadInputError, TargetError, WriteError
from autocompress.hardware.lut import DeviceSpec, LatencyTable, load_device, load_table

if TYPE_CHECKING:
    from autocompress.space import SearchSpace

TABLES_DIR = tables_dir()  # the shipped tables (see autocompress._resources)
USER_TABLES_ENV = "AUTOCOMPRESS_TABLES"


def user_table_dirs() -> list[Path]:
    """The folders named in ``$AUTOCOMPRESS_TABLES`` (os.pathsep-separated), in order."""
    return [Path(p).expanduser() for p in os.environ.get(USER_TABLES_ENV, "").split(os.pathsep) if p]


def default_user_tables() -> Path:
    """``<cache>/tables`` (``$AUTOCOMPRESS_CACHE``, else ``~/.cache/autocompress``): where rows
    measured at search start go when neither the table's folder nor ``$AUTOCOMPRESS_TABLES`` is
    writable-and-named."""
    from autocompress.data_files import cache_dir  # torch-free

    return cache_dir() / "tables"


def user_tables_root() -> Path:
    """The folder a user's own copies of tables are written to: the first
    ``$AUTOCOMPRESS_TABLES`` folder, else :func:`default_user_tables`."""
    return (user_table_dirs() or [default_user_tables()])[0]


def table_dirs() -> list[Path]:
    """Folders searched for target tables: ``$AUTOCOMPRESS_TABLES`` first, then the user tables
    folder, then the shipped ones."""
    return [*user_table_dirs(), default_user_tables(), TABLES_DIR]


def new_table_folder(name: str) -> Path:
    """Where a freshly measured table ``name`` goes: the first ``$AUTOCOMPRESS_TABLES`` folder
    (searched first, so the new table is the one used), else the shipped tables."""
    return (user_table_dirs() or [TABLES_DIR])[0] / name


def check_writable(folder: Path) -> Path:
    """``folder`` once files can be written in it, checked before any long work.

    Raises:
        WriteError: naming the folder; for the tables installed with the package (read-only for
            this user), also where to write instead.
    """
    try:
        return ensure_writable_dir(folder, "table folder")
    except WriteError as exc:
        if not is_shipped(folder):
            raise
        copy = f" && cp -r {folder} ~/tables/" if Path(folder).is_dir() else ""
        raise WriteError(
            f"{exc} (the tables installed with the package); write to a folder of your own named in "
            f"${USER_TABLES_ENV}, which is searched first: mkdir -p ~/tables{copy} && export {USER_TABLES_ENV}=~/tables"
        ) from None


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
            again = f"; re-calibrated to this machine ({host['recalibrated_to']})" if host.get("recalibrated_to") else ""
            return "measured (" + ", ".join(b for b in bits if b) + again + ")"
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


def check_precisions(space: SearchSpace, device: DeviceSpec) -> None:
    """Every precision the space can choose is one the target runs.

    Raises:
        TargetError: naming the precisions the target lacks and those it runs.
    """
    used = sorted({p for k, v in space.dimensions().items() if k.endswith("_precision") for p in v})
    missing = [p for p in used if p not in device.precisions]
    if missing:
        raise TargetError(f"space {space.name} uses {', '.join(missing)} but target {device.name} runs "
                          f"{', '.join(device.precisions)}")  # fmt: skip


FILE_PRECISIONS = ("fp32", "fp16", "int8", "mixed")  # what `latency` prices a file in; mixed: as the file stores it
PRECISION_MODES = FILE_PRECISIONS  # validate-latency's candidates: every stage in one, or mixed as the space samples


def check_measured_here(device: DeviceSpec) -> None:
    """A table ``validate-latency`` can check: one measured (on this machine), not estimated.
    Torch-free, so the command refuses before it loads the timing path.

    Raises:
        TargetError: naming what to run instead.
    """
    if device.source != "measured":
        raise TargetError(
            f"{device.name} is {device.source}, not measured here: validate-latency times models on this "
            f"machine, so it can only check a table measured on it (run 'autocompress profile' on "
            f"the device itself, then 'autocompress validate-latency' there)"
        )


def check_file_precision(precision: str, target: Target | None = None) -> None:
    """``autocompress latency``'s ``--precision``: one of :data:`FILE_PRECISIONS`, and (except
    mixed, which depends on the file) one ``target`` runs, when given. Torch-free, so the command
    refuses a wrong request before it loads the pricing path.

    Raises:
        BadInputError: naming the choices, or the precisions the target runs.
    """
    if precision not in FILE_PRECISIONS:
        raise BadInputError(f"--precision must be one of {', '.join(FILE_PRECISIONS)}; got {precision!r}")
    if target is not None and precision != "mixed" and precision not in target.device.precisions:
        runs = ", ".join(target.device.precisions)
        raise BadInputError(f"target {target.name} has no {precision} table rows (it runs {runs})")


# The profiler's tables: the target each runtime's profile writes by default, with its aliases
# (here rather than in hardware/profile.py, which loads torch: a mistyped profile is refused first)
DEFAULT_NAMES = {"onnxruntime": "x86-cpu-onnxruntime", "openvino": "x86-cpu-openvino",
                 "tensorrt": "nvidia-gpu-tensorrt"}  # fmt: skip
DEFAULT_ALIASES = {
    "x86-cpu-onnxruntime": ["cpu", "x86", "x86-cpu"],
    "x86-cpu-openvino": ["openvino", "cpu-openvino", "x86-openvino"],
    "nvidia-gpu-tensorrt": ["gpu", "tensorrt"],
}


def supported_precisions(runtime: str) -> list[str]:
    """Precisions the profiler measures with ``runtime`` (fails with one line when TensorRT or a
    GPU is missing for ``tensorrt``).

    On a CPU fp16 is left out: ONNX Runtime's CPU provider has no fp16 convolutions (it would
    time casts), and OpenVINO computes fp16 on a CPU only with AVX512-FP16/AMX-FP16 or ARM fp16,
    which x86 machines like this one's (OPTIMIZATION_CAPABILITIES = FP32, INT8) lack. TensorRT
    on a GPU runs all three.
    """
    if runtime == "tensorrt":
        from autocompress.runtime_tensorrt import check_available

        check_available()
        return ["fp32", "fp16", "int8"]
    if runtime == "openvino":
        from autocompress.runtime import _openvino

        _openvino()  # a clear error when it is not installed
    return ["fp32", "int8"]


def check_profile_precisions(runtime: str, precisions: list[str]) -> None:
    """``profile --precision``: at least one, each one ``runtime`` measures here.

    Raises:
        BadInputError: naming what the runtime runs (TensorRT or a GPU missing: that, in one line).
    """
    runs = supported_precisions(runtime)
    if not precisions or any(p not in runs for p in precisions):
        where = "a GPU" if runtime == "tensorrt" else "this CPU"
        raise BadInputError(
            f"--precision: {runtime} on {where} runs {', '.join(runs)}; got {','.join(precisions) or 'nothing'}"
        )


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
