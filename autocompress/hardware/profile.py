"""Measure fused blocks on this machine with ONNX Runtime and write a ``source=measured`` table.

Each block is exported alone (and quantized for int8), warmed up, then timed many times
interleaved with the other blocks of its group; the table stores the median minus the latency
of a trivial graph (the per-call overhead, stored once in ``device.yaml``), so that a network's
latency is ``overhead + sum(blocks)``.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from autocompress import __version__
from autocompress.arch import BlockSpec, all_blocks
from autocompress.compress.quantize import quantize_int8
from autocompress.exceptions import BadInputError, TargetError
from autocompress.hardware.lut import BlockKey, DeviceSpec, LatencyTable, Row, load_table
from autocompress.runtime import export_onnx, measure_latency
from autocompress.space import SearchSpace
from autocompress.supernet import ConvBNAct, MBConv

MIN_BLOCK_MS = 0.001  # a block is never free; below timer resolution it is stored as 1 us
GROUP = 12  # blocks timed interleaved with each other


class _Head(nn.Module):
    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(spec.in_c, spec.out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(x), 1))


class _Trivial(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def block_module(spec: BlockSpec) -> nn.Module:
    """The fused block alone, as a module with realistic (non-degenerate) BN statistics."""
    if spec.op == "stem":
        module: nn.Module = ConvBNAct(spec.in_c, spec.out_c, spec.kernel, spec.stride)
    elif spec.op == "mbconv":
        module = MBConv(spec)
    elif spec.op == "head":
        module = _Head(spec)
    else:
        raise BadInputError(f"cannot profile op {spec.op!r}")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module.eval()


def host_info(threads: int) -> dict[str, object]:
    import onnxruntime as ort

    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "tool": f"autocompress {__version__} profile",
        "date": date.today().isoformat(),
    }


def profile_blocks(
    blocks: list[BlockSpec],
    precisions: list[str],
    *,
    threads: int = 1,
    reps: int = 60,
    workdir: Path,
    on_block: Callable[[int, int], None] | None = None,
) -> tuple[float, list[Row]]:
    """Time each block at each precision; returns (per-call overhead ms, rows)."""
    jobs = [(b, p) for b in blocks for p in precisions]
    total = len(jobs)
    trivial = export_onnx(_Trivial(), workdir / "trivial.onnx", channels=1, resolution=8)
    (overhead_t,) = measure_latency([trivial], shape=(1, 1, 8, 8), threads=threads, reps=max(reps, 200))
    overhead = overhead_t.median_ms
    rows: list[Row] = []
    rng = np.random.default_rng(0)
    for start in range(0, total, GROUP):
        group = jobs[start : start + GROUP]
        paths, shapes = [], []
        for i, (spec, prec) in enumerate(group):
            shape = (1, spec.in_c, spec.in_h, spec.in_w)
            path = export_onnx(block_module(spec), workdir / f"b{start + i}.onnx",
                               channels=spec.in_c, resolution=spec.in_h)  # fmt: skip
            if prec == "int8":
                calib = np.abs(rng.standard_normal((16, *shape[1:]), dtype=np.float32))
                path = quantize_int8(path, workdir / f"b{start + i}.int8.onnx", calib)
            elif prec != "fp32":
                raise BadInputError(f"profiling {prec} with onnxruntime on CPU is not supported")
            paths.append(path)
            shapes.append(shape)
        timings = measure_latency(paths, shape=shapes, threads=threads, reps=reps)
        for (spec, prec), t in zip(group, timings):
            rows.append(
                Row(
                    key=BlockKey.of(spec, prec),
                    latency_ms=max(MIN_BLOCK_MS, t.median_ms - overhead),
                    latency_std_ms=t.std_ms,
                    energy_mj=None,
                    source="measured",
                )
            )
        for p in paths:
            p.unlink(missing_ok=True)
        if on_block:
            on_block(min(start + GROUP, total), total)
    return overhead, rows


def profile_space(
    space: SearchSpace,
    *,
    name: str,
    precisions: list[str],
    folder: Path,
    threads: int = 1,
    reps: int = 60,
    in_channels: int = 1,
    num_classes: int = 10,
    merge: bool = True,
    on_block: Callable[[int, int], None] | None = None,
) -> LatencyTable:
    """Measure every block ``space`` can produce and write (or extend) the table in ``folder``."""
    import onnxruntime as ort

    bad = [p for p in precisions if p not in ("fp32", "int8")]
    if bad or not precisions:
        raise BadInputError(f"--precision must list fp32 and/or int8 for onnxruntime on CPU; got {precisions}")
    if threads < 1 or reps < 5:
        raise BadInputError(f"--threads must be >= 1 and --reps >= 5; got {threads} and {reps}")
    blocks = sorted(all_blocks(space, in_channels, num_classes), key=lambda b: (b.op, b.in_h, b.in_c, b.out_c, b.kernel, b.expand))
    with tempfile.TemporaryDirectory() as tmp:
        overhead, rows = profile_blocks(blocks, precisions, threads=threads, reps=reps,
                                        workdir=Path(tmp), on_block=on_block)  # fmt: skip
    merged: dict[BlockKey, Row] = {}
    old_precisions: list[str] = []
    if merge and (folder / "blocks.csv").is_file():
        try:
            old = load_table(folder)
        except TargetError:
            old = None
        if old is not None and old.device.source == "measured" and old.device.host.get("threads") == threads:
            merged.update(old.rows)
            old_precisions = list(old.device.precisions)
    merged.update({r.key: r for r in rows})
    device = DeviceSpec(
        name=name,
        aliases=["cpu", "x86", "x86-cpu"] if name == "x86-cpu-onnxruntime" else [],
        description=f"This machine's CPU with ONNX Runtime {ort.__version__} (CPUExecutionProvider), batch 1",
        source="measured",
        runtime="onnxruntime",
        runtime_version=ort.__version__,
        precisions=sorted(set(precisions) | set(old_precisions), key=["fp32", "fp16", "int8"].index),
        overhead_ms=round(overhead, 6),
        transition_ms=0.0,
        power_w=None,
        power_note="no power meter on this machine: energy is not reported for this target",
        host=host_info(threads),
        notes=(
            "Each row: median of timed runs of the block alone (exported by autocompress, int8 = "
            "ONNX Runtime static QDQ per-channel), minus overhead_ms (a trivial graph's latency). "
            "int8 rows include the block's own quantize/dequantize at its edges, so transition_ms is 0."
        ),
    )
    table = LatencyTable(device=device, rows=merged, folder=folder)
    table.save(folder)
    return table
