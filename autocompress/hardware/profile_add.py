"""Add measured rows for the blocks a measured table lacks, leaving everything it has alone.

``autocompress profile --space S --missing-only`` measures only the blocks of ``S`` (at each
precision) that ``blocks.csv`` has no row for, the same way ``profile`` measures every block
(:func:`autocompress.hardware.profile.profile_blocks`), and merges them into ``blocks.csv``.
``device.yaml`` is not rewritten: its per-inference overhead, int8 transition, block_scale and
host stay what the full profile measured, so adding a new space's blocks (say, on a busy
machine) cannot shift the prices of the spaces already in the table.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from autocompress.arch import all_blocks
from autocompress.exceptions import BadInputError, TargetError
from autocompress.hardware.lut import BlockKey, LatencyTable, load_table
from autocompress.hardware.profile import profile_blocks, refuse_another_machine
from autocompress.hardware.targets import supported_precisions
from autocompress.space import SearchSpace


def missing_blocks(table: LatencyTable, space: SearchSpace, precisions: list[str], in_channels: int,
                   num_classes: int) -> list[tuple]:  # fmt: skip
    """(block, precision) pairs of ``space`` that ``table`` has no row for."""
    blocks = sorted(all_blocks(space, in_channels, num_classes),
                    key=lambda b: (b.op, b.in_h, b.in_c, b.out_c, b.kernel, b.expand, b.act))  # fmt: skip
    batch = table.device.batch
    return [(b, p) for b in blocks for p in precisions if BlockKey.of(b, p, batch) not in table.rows]


def profile_missing(
    space: SearchSpace,
    folder: Path,
    *,
    precisions: list[str],
    runtime: str,
    threads: int = 1,
    reps: int = 60,
    passes: int = 3,
    in_channels: int = 1,
    num_classes: int = 10,
    on_block: Callable[[int, int], None] | None = None,
) -> tuple[LatencyTable, int]:
    """Measure the blocks of ``space`` missing from the measured table in ``folder`` and merge
    their rows into its ``blocks.csv`` (written atomically; ``device.yaml`` untouched).

    Returns:
        (the merged table, how many rows were added).

    Raises:
        BadInputError: the table was measured with another runtime or thread count, on another
            machine, or a precision this runtime does not measure.
        TargetError: the table is not a measured one.
    """
    table = load_table(folder)
    device = table.device
    if device.source != "measured":
        raise TargetError(f"{folder} is a {device.source} table; --missing-only adds measured rows only")
    if device.runtime != runtime or device.host.get("threads") != threads:
        raise BadInputError(
            f"{device.name} was measured with {device.runtime}, {device.host.get('threads')} thread(s); "
            f"add its rows the same way (--runtime {device.runtime} --threads {device.host.get('threads')})"
        )
    refuse_another_machine(device, folder, "")
    bad = [p for p in precisions if p not in supported_precisions(runtime) or p not in device.precisions]
    if bad or not precisions:
        raise BadInputError(f"--precision: {device.name} holds {', '.join(device.precisions)}; got "
                            f"{','.join(precisions) or 'nothing'}")  # fmt: skip
    todo = missing_blocks(table, space, precisions, in_channels, num_classes)
    return add_measured_rows(folder, todo, runtime=runtime, threads=threads, reps=reps, passes=passes,
                             on_block=on_block)  # fmt: skip


def add_measured_rows(
    folder: Path,
    todo: list[tuple],
    *,
    runtime: str,
    threads: int = 1,
    reps: int = 60,
    passes: int = 3,
    on_block: Callable[[int, int], None] | None = None,
) -> tuple[LatencyTable, int]:
    """Measure ``(block, precision)`` pairs the table in ``folder`` lacks and merge their rows
    into its ``blocks.csv`` (after each precision, atomically); ``device.yaml`` is not touched.
    Pairs the table already has are skipped."""
    table = load_table(folder)
    batch = table.device.batch
    todo = [(b, p) for b, p in todo if BlockKey.of(b, p, batch) not in table.rows]
    added = 0
    for prec in dict.fromkeys(p for _, p in todo):
        blocks = list(dict.fromkeys(b for b, p in todo if p == prec))
        with tempfile.TemporaryDirectory() as tmp:
            done_before = added

            def tick(done: int, total: int, base: int = done_before) -> None:
                if on_block is not None:
                    on_block(base + done, len(todo))

            _, _, rows = profile_blocks(blocks, [prec], threads=threads, reps=reps, runtime=runtime,
                                        passes=passes, workdir=Path(tmp), on_block=tick)  # fmt: skip
        table.rows.update({r.key: r for r in rows})
        table._families.clear()
        added += len(rows)
        table.save(folder, write_device=False)  # after each precision: an interrupted run keeps what it measured
    return table, added
