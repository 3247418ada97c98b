"""Fill a measured layer table's gaps on the machine that measured it, at search start.

A layer whose family has no row in a *measured* table cannot be priced. When the table was
measured here (same CPU model and logical CPU count as its ``device.yaml`` ``host`` records),
those layers are profiled now (a few seconds each, fewer repetitions than ``profile --layers``)
and merged into the table; on another machine the search is refused with the command that
measures them there. Where rows are written: the table's own folder when it is writable, else
a copy of it in the user tables folder (the first ``$AUTOCOMPRESS_TABLES`` folder, or
``<cache>/tables``, both searched before the shipped tables; see ``targets.py``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from autocompress.exceptions import UnpricedLayersError, WriteError
from autocompress.hardware.host import cpu_model
from autocompress.hardware.layer_table import LayerKey, LayerTable, merge_rows
from autocompress.hardware.lut import DeviceSpec
from autocompress.hardware.targets import Target, check_writable, user_tables_root

FILL_REPS = (
    30  # per pass; profile --layers uses 60: these rows only have to exist, a later profile refines them
)
FILL_PASSES = 2


def same_host(device: DeviceSpec) -> bool:
    """Whether ``device`` (a measured table) was measured on this machine: same CPU model and
    logical CPU count as its ``host`` section records."""
    host = device.host or {}
    return (
        device.source == "measured"
        and str(host.get("cpu", "")).strip() == cpu_model().strip()
        and int(host.get("logical_cpus") or 0) == (os.cpu_count() or 0)
    )


def missing_families(
    table: LayerTable, keys: Sequence[LayerKey], precisions: Sequence[str]
) -> list[LayerKey]:
    """Of ``keys``, those at a precision the table's device runs whose family has no row (what a
    measured table cannot interpolate), one per distinct key, in order."""
    out: dict[LayerKey, None] = {}
    for key in keys:
        if key.precision in precisions and table.get(key) is None and not table.rows_like(key):
            out.setdefault(key, None)
    return list(out)


def writable_folder(target: Target) -> Path:
    """The folder the target's new rows go to: its own, or a copy in the user tables folder when
    its own is read-only (an installed package).

    Raises:
        WriteError: neither can be written.
    """
    try:
        return check_writable(target.folder)
    except WriteError:
        copy = user_tables_root() / target.folder.name
        if copy.resolve() == target.folder.resolve():
            raise
        check_writable(copy)
        for f in target.folder.iterdir():
            if f.is_file() and not (copy / f.name).exists():
                shutil.copy2(f, copy / f.name)
        return copy


def fill_layers(target: Target, table: LayerTable, keys: Sequence[LayerKey], *, command: str,
                on_progress: Callable[[int, int], None] | None = None,
                reps: int = FILL_REPS, passes: int = FILL_PASSES) -> tuple[LayerTable, list[LayerKey]]:  # fmt: skip
    """Profile the ``keys`` whose family ``table`` lacks, on this machine, and merge them.

    Estimated targets, and measured tables that already price every key, are returned as they
    are. Returns the (updated) table and the keys profiled.

    Raises:
        UnpricedLayersError: the table was measured on another machine (one line, with
            ``command``, the one that profiles them there); nothing is written.
    """
    device = target.device
    if device.source != "measured":
        return table, []
    todo = missing_families(table, keys, device.precisions)
    if not todo:
        return table, []
    if not same_host(device):
        host = device.host or {}
        raise UnpricedLayersError(
            f"target {target.name} has no layer-table rows for {len(todo)} layer(s) "
            f"({'; '.join(k.label() for k in todo[:4])}{' ...' if len(todo) > 4 else ''}) and was measured on "
            f"another machine ({host.get('cpu', '?')}, {host.get('logical_cpus', '?')} CPUs; this one: "
            f"{cpu_model()}, {os.cpu_count()} CPUs); profile them there with: {command}"
        )
    from autocompress.hardware.layer_profile import profile_layer_keys

    folder = writable_folder(target)
    rows = profile_layer_keys(todo, threads=int(device.host.get("threads") or 1), reps=reps, passes=passes,
                              runtime=device.runtime, on_progress=on_progress)  # fmt: skip
    merged = merge_rows(folder, device, rows)
    target.folder = folder  # the copy, when the rows went there: it is the one found from now on
    return merged, todo
