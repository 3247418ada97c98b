"""Measure fused blocks on this machine (ONNX Runtime or OpenVINO on the CPU, TensorRT on an
NVIDIA GPU) and write a ``source=measured`` table.

Each block is exported alone (and quantized for int8), warmed up, then timed many times
interleaved with the other blocks of its group; the table stores the median minus the latency
of a trivial graph (the per-call overhead, stored once in ``device.yaml``), so that a network's
latency is ``overhead + sum(blocks)``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

from autocompress.arch import BlockSpec, all_blocks
from autocompress.compress.quantize import quantize_int8
from autocompress.exceptions import BadInputError, TargetError
from autocompress.hardware.host import cpu_model, host_info
from autocompress.hardware.lut import (
    BlockKey,
    DeviceSpec,
    EdgeCost,
    LatencyTable,
    Row,
    load_table,
    save_device,
)
from autocompress.hardware.qdq import measure_edges
from autocompress.hardware.scale import store_scale
from autocompress.hardware.targets import DEFAULT_ALIASES, DEFAULT_NAMES, Target, check_profile_precisions
from autocompress.hardware.validate import fit_block_scale
from autocompress.runtime import TIMED_RUNTIMES, export_onnx, measure_passes, pinned_cpus, runtime_version
from autocompress.space import SearchSpace
from autocompress.supernet import ConvBNAct, MBConv

MIN_BLOCK_MS = 0.001  # a block is never free; below timer resolution it is stored as 1 us
GROUP = 24  # graphs timed interleaved with each other


class _Head(nn.Module):
    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(spec.in_c, spec.out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(x), 1))


def block_module(spec: BlockSpec, seed: int = 0) -> nn.Module:
    """The fused block alone, as a module with realistic (non-degenerate) BN statistics."""
    if spec.op == "stem":
        module: nn.Module = ConvBNAct(spec.in_c, spec.out_c, spec.kernel, spec.stride, act=spec.act)
    elif spec.is_mbconv:
        module = MBConv(spec)
    elif spec.op == "head":
        module = _Head(spec)
    else:
        raise BadInputError(f"cannot profile op {spec.op!r}")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module.eval()


COPIES = 8  # a block is timed alone and as COPIES independent copies in one graph
PASSES = 3  # each graph timed in this many passes spread over the run; the fastest is kept


def replicate(model: onnx.ModelProto, k: int) -> onnx.ModelProto:
    """``k`` independent copies of a one-block graph, all reading its input, each its own output.

    Copies get their own (slightly rescaled) initializers, so no runtime can merge them as
    common subexpressions. A quantized block's input QuantizeLinear is shared, as in a network,
    where the previous block's quantized output feeds the next block.
    """
    g = model.graph
    inp = g.input[0].name
    shared: set[str] = {inp}
    shared_nodes = []
    for node in g.node:  # the input's QuantizeLinear (or fp16 Cast); each copy keeps its own
        # DequantizeLinear, since runtimes fuse DQ -> Conv into an int8 conv only when the DQ has one consumer
        if node.op_type in ("QuantizeLinear", "Cast") and node.input[0] in shared:
            shared.update(node.output)
            shared_nodes.append(node)
    used_by_shared = {name for n in shared_nodes for name in n.input[1:]}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:], out.graph.initializer[:], out.graph.output[:], out.graph.value_info[:]
    out.graph.node.extend(shared_nodes)
    out.graph.initializer.extend(i for i in g.initializer if i.name in used_by_shared)
    for c in range(k):

        def rn(name: str, c: int = c) -> str:
            return name if (name in shared or name in used_by_shared or not name) else f"c{c}/{name}"

        for j, node in enumerate(g.node):
            if any(node is s for s in shared_nodes):
                continue
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.name = f"c{c}/{node.name or f'node{j}'}"  # the quantizer leaves some nodes unnamed
            new.input[:] = [rn(i) for i in node.input]
            new.output[:] = [rn(o) for o in node.output]
            out.graph.node.append(new)
        for init in g.initializer:
            if init.name in used_by_shared:
                continue
            arr = numpy_helper.to_array(init)
            if arr.dtype in (np.float32, np.float16) and arr.size > 1:
                arr = (arr * (1.0 + 0.01 * c)).astype(arr.dtype)
            out.graph.initializer.append(numpy_helper.from_array(arr, rn(init.name)))
        for o in g.output:
            new_o = onnx.ValueInfoProto()
            new_o.CopyFrom(o)
            new_o.name = rn(o.name)
            out.graph.output.append(new_o)
    return out


def block_onnx(
    spec: BlockSpec, precision: str, workdir: Path, tag: str, calib: np.ndarray, runtime: str = "onnxruntime"
) -> Path:  # fmt: skip
    """The block alone, exported (and quantized for int8) once: ``workdir/tag.<precision>.onnx``,
    as a candidate deploys it: fp16 in half precision with casts at its edges, int8 with the
    ``runtime``'s QDQ (zero-point-0 activations for TensorRT)."""
    fp32 = workdir / f"{tag}.fp32.onnx"
    if not fp32.exists():
        export_onnx(block_module(spec), fp32, channels=spec.in_c, resolution=spec.in_h)
    if precision == "fp32":
        return fp32
    if precision == "int8":
        return quantize_int8(fp32, workdir / f"{tag}.int8.onnx", calib,
                             symmetric_activations=runtime == "tensorrt")  # fmt: skip
    if precision == "fp16":
        from autocompress.compress.pipeline import HalfPart

        return export_onnx(HalfPart(block_module(spec)), workdir / f"{tag}.fp16.onnx", channels=spec.in_c,
                           resolution=spec.in_h)  # fmt: skip
    raise BadInputError(f"cannot profile precision {precision!r}")


def copies_onnx(src: Path, k: int) -> Path:
    """``src`` replicated ``k`` times (see :func:`replicate`), saved beside it."""
    dst = src.with_name(f"{src.stem}.x{k}.onnx")
    onnx.save(replicate(onnx.load(str(src)), k), str(dst))
    return dst


def profile_blocks(
    blocks: list[BlockSpec],
    precisions: list[str],
    *,
    threads: int = 1,
    reps: int = 60,
    workdir: Path,
    runtime: str = "onnxruntime",
    copies: int = COPIES,
    passes: int = PASSES,
    on_block: Callable[[int, int], None] | None = None,
) -> tuple[float, float, list[Row]]:
    """Time each block at each precision.

    Each block is timed as a graph of 1 copy and of ``copies`` copies; the row is the slope
    ``(T_k - T_1) / (k - 1)`` of their 10th-percentile times (the fastest decile: on a shared
    machine other processes only ever add time, and the low quantile of runs interleaved with
    other blocks is what repeats from one profile to the next), so the per-call overhead
    cancels instead of being subtracted (it is as large as a small block here) and timer jitter
    is divided by ``k - 1``. Every graph is timed in ``passes`` passes, in a new random grouping
    each time, and keeps its fastest once another pass repeats it (graphs whose fastest is not
    repeated are timed again; see :func:`autocompress.runtime.measure_passes`). The
    intercepts ``T_1 - slope`` give the per-inference overhead (median over fp32 blocks) and
    the cost of entering int8 (median int8 minus fp32 intercept: the input's QuantizeLinear).

    Returns:
        (overhead ms, transition ms, rows)
    """
    if copies < 2:
        raise BadInputError(f"copies must be >= 2; got {copies}")
    jobs = [(b, p) for b in blocks for p in precisions]
    rows: list[Row] = []
    intercepts: dict[tuple[BlockSpec, str], float] = {}
    rng = np.random.default_rng(0)
    paths, shapes = [], []
    for n, (spec, prec) in enumerate(jobs):  # export everything first: passes re-time the files
        shape = (1, spec.in_c, spec.in_h, spec.in_w)
        calib = np.abs(rng.standard_normal((16, *shape[1:]), dtype=np.float32))
        one = block_onnx(spec, prec, workdir, f"b{blocks.index(spec)}", calib, runtime)
        paths += [one, copies_onnx(one, copies)]
        shapes += [shape, shape]
        if on_block:
            on_block(n + 1, len(jobs) * (1 + passes))
    timings = measure_passes(
        paths, shapes, passes=passes, group=GROUP, threads=threads, reps=reps, runtime=runtime, warn=True,
        on_progress=(lambda d, t: on_block(len(jobs) + d // 2, len(jobs) * (1 + passes))) if on_block else None,
    )  # fmt: skip
    for j, (spec, prec) in enumerate(jobs):
        one, many = timings[2 * j], timings[2 * j + 1]
        slope = (many.p10_ms - one.p10_ms) / (copies - 1)
        intercepts[(spec, prec)] = one.p10_ms - slope
        rows.append(
            Row(
                key=BlockKey.of(spec, prec),
                latency_ms=max(MIN_BLOCK_MS, slope),
                latency_std_ms=float(np.hypot(many.std_ms, one.std_ms) / (copies - 1)),
                energy_mj=None,
                source="measured",
            )
        )
    fp32 = [v for (spec, prec), v in intercepts.items() if prec == "fp32"]
    overhead = float(np.median(fp32)) if fp32 else float(np.median(list(intercepts.values())))
    entering = [v - intercepts[(spec, "fp32")] for (spec, prec), v in intercepts.items()
                if prec == "int8" and (spec, "fp32") in intercepts]  # fmt: skip
    transition = max(0.0, float(np.median(entering))) if entering else 0.0
    return max(0.0, overhead), transition, rows


def block_edges(blocks: list[BlockSpec], *, threads: int, reps: int, passes: int,
                runtime: str) -> tuple[EdgeCost, EdgeCost]:  # fmt: skip
    """The int8 entry and exit costs on this machine, fitted on the blocks' activation shapes
    (inputs and outputs; see :mod:`autocompress.hardware.qdq`)."""
    shapes = [(b.in_c, b.in_h, b.in_w) for b in blocks] + [(b.out_c, b.out_h, b.out_w) for b in blocks]
    entry, exit_, _ = measure_edges(shapes, threads=threads, reps=reps, passes=passes, runtime=runtime)
    return entry, exit_


def refuse_another_machine(device: DeviceSpec, folder: Path, instead: str) -> None:
    """Refuse to add rows timed here to ``device``'s table when it was measured on another machine
    (another CPU model or logical CPU count than its ``host`` records): ``device.yaml`` names one
    host, so the mixed table would claim the other machine's rows were timed here (a search here
    would then skip re-calibrating them), or this machine's rows were timed there.

    Raises:
        BadInputError: naming both machines and, from ``instead``, what to run instead.
    """
    host = device.host or {}
    if (str(host.get("cpu", "")).strip() == cpu_model().strip()
            and int(host.get("logical_cpus") or 0) == (os.cpu_count() or 0)):  # fmt: skip
        return
    raise BadInputError(
        f"{device.name} ({folder}) was measured on another machine ({host.get('cpu', 'unknown')!r}, "
        f"{host.get('logical_cpus', '?')} logical CPUs; this one: {cpu_model()!r}, {os.cpu_count()}): rows "
        f"timed here would mix two machines in one table; profile this machine into a table of its own "
        f"(--name {device.name}-here){instead}"
    )


def profile_space(
    space: SearchSpace,
    *,
    name: str | None = None,
    precisions: list[str],
    folder: Path,
    runtime: str = "onnxruntime",
    threads: int = 1,
    reps: int = 60,
    in_channels: int = 1,
    num_classes: int = 10,
    merge: bool = True,
    pin: bool = False,
    passes: int = PASSES,
    networks: int = 24,
    on_block: Callable[[int, int], None] | None = None,
) -> LatencyTable:
    """Measure every block ``space`` can produce with ``runtime`` on this machine and write (or
    extend) the table in ``folder``."""
    if runtime not in TIMED_RUNTIMES:
        raise BadInputError(f"--runtime must be one of {', '.join(TIMED_RUNTIMES)}; got {runtime!r}")
    name = name or DEFAULT_NAMES[runtime]
    check_profile_precisions(runtime, precisions)
    if threads < 1 or reps < 5:
        raise BadInputError(f"--threads must be >= 1 and --reps >= 5; got {threads} and {reps}")
    blocks = sorted(all_blocks(space, in_channels, num_classes),
                    key=lambda b: (b.op, b.in_h, b.in_c, b.out_c, b.kernel, b.expand))  # fmt: skip
    previous: LatencyTable | None = None
    if merge and (folder / "blocks.csv").is_file():
        try:
            previous = load_table(folder)
        except TargetError:
            previous = None
        same_kind = previous is not None and previous.device.source == "measured" \
            and previous.device.runtime == runtime and previous.device.host.get("threads") == threads  # fmt: skip
        if not same_kind:
            previous = None  # another kind of table (estimated, another runtime or thread count): replaced
    if previous is not None:  # before minutes of timing
        refuse_another_machine(previous.device, folder, ", or pass --replace to drop the other machine's rows")
    with tempfile.TemporaryDirectory() as tmp, pinned_cpus(threads if pin else 0) as cpus:
        overhead, transition, rows = profile_blocks(blocks, precisions, threads=threads, reps=reps, runtime=runtime,
                                                    passes=passes, workdir=Path(tmp), on_block=on_block)  # fmt: skip
        edges = block_edges(blocks, threads=threads, reps=reps, passes=passes, runtime=runtime) \
            if "int8" in precisions else None  # fmt: skip
    merged: dict[BlockKey, Row] = {}
    old_precisions: list[str] = []
    block_scale: float | dict[str, float] = 1.0
    scale_note = "block_scale 1: not fitted"
    if previous is not None:
        merged.update(previous.rows)
        old_precisions = list(previous.device.precisions)
        block_scale = previous.device.block_scale
        scale_note = str(previous.device.host.get("block_scale_fit", scale_note))
        if edges is None and previous.device.int8_entry is not None and previous.device.int8_exit is not None:
            edges = (previous.device.int8_entry, previous.device.int8_exit)
    merged.update({r.key: r for r in rows})
    version = runtime_version(runtime)
    label = {"onnxruntime": f"ONNX Runtime {version} (CPUExecutionProvider)",
             "openvino": f"OpenVINO {version} (CPU plugin, latency hint, 1 stream)",
             "tensorrt": f"TensorRT {version} (one engine per graph, GPU time by CUDA events)"}[runtime]  # fmt: skip
    int8 = {"onnxruntime": "ONNX Runtime static QDQ per-channel",
            "openvino": "the ONNX Runtime static QDQ file, compiled by OpenVINO's low-precision transformations",
            "tensorrt": "ONNX Runtime static QDQ per-channel with zero-point-0 activations, built as an "
                        "explicitly quantized engine (INT8 flag, no calibrator); fp16 = half-precision file, FP16 flag"}[runtime]  # fmt: skip
    host = host_info(threads, runtime, cpus)
    if runtime == "tensorrt":
        from autocompress.runtime_tensorrt import gpu_info

        host = {**host, **gpu_info()}
    device = DeviceSpec(
        name=name,
        aliases=DEFAULT_ALIASES.get(name, []),
        # "the machine that profiled it": a table travels (shipped, copied), "this machine" would not
        description=(f"The GPU it was profiled on ({host['gpu']}) with {label}, batch 1" if runtime == "tensorrt"
                     else f"The CPU it was profiled on ({host.get('cpu', 'unknown')}) with {label}, batch 1"),  # fmt: skip
        source="measured",
        runtime=runtime,
        runtime_version=version,
        precisions=sorted(set(precisions) | set(old_precisions), key=["fp32", "fp16", "int8"].index),
        overhead_ms=round(overhead, 6),
        transition_ms=0.0 if edges else round(transition, 6),
        int8_entry=edges[0] if edges else None,
        int8_exit=edges[1] if edges else None,
        power_w=None,
        power_note="no power meter on this machine: energy is not reported for this target",
        host=host,
        notes=(
            f"Each row: the block timed as a graph of 1 copy and of {COPIES} independent copies (10th percentile of "
            f"{reps} interleaved runs, fastest of {passes} passes, re-timed until a second pass repeats it within 5%, int8 = {int8}); row = (T_{COPIES} - T_1) / {COPIES - 1}, so the "
            "per-call overhead cancels. overhead_ms = median fp32 intercept (T_1 - row). "
            + ("int8_entry / int8_exit: QuantizeLinear / DequantizeLinear timed alone on the blocks' activation "
               "shapes (same slope method), fitted as fixed + per-element cost; charged once per int8 region, "
               "each int8 row counted without its own output dequantize."
               if edges else "transition_ms = median extra intercept of int8 blocks (quantizing the input when "
               "entering int8).")
        ),
    )
    device = device.model_copy(
        update={"block_scale": block_scale, "host": {**device.host, "block_scale_fit": scale_note}}
    )
    # written and fitted in a hidden folder beside it, then swapped in: an interrupted profile (the
    # fit takes minutes) leaves the table as it was, never a half-fitted one a search would use
    work = folder.parent / f".{folder.name}.profiling"
    old = folder.parent / f".{folder.name}.replaced"
    try:
        shutil.rmtree(work, ignore_errors=True)
        if folder.is_dir():
            shutil.copytree(folder, work)  # what else the folder holds (layers.csv) is kept
        work.mkdir(parents=True, exist_ok=True)
        LatencyTable(device=device, rows=merged, folder=work).save(work)
        if networks > 0:
            with pinned_cpus(threads if pin else 0):
                fit_table_scale(work, space, networks=networks, passes=passes, channels=in_channels,
                                classes=num_classes)  # fmt: skip
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        work.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return load_table(folder)


def fit_table_scale(
    folder: Path, space: SearchSpace, *, networks: int = 24, passes: int = PASSES, channels: int = 1,
    classes: int = 10,
) -> LatencyTable:  # fmt: skip
    """Time ``networks`` random networks of ``space`` end to end and store the fitted per-precision
    ``block_scale`` in the measured table in ``folder`` (see ``validate.fit_block_scale``)."""
    table = load_table(folder)
    scales, fitted, int8 = fit_block_scale(Target(folder=folder, device=table.device), space, n=networks,
                                           passes=passes, channels=channels, classes=classes)  # fmt: skip
    note = (f"block_scale fitted on {fitted} random {space.model.name} networks timed end to end "
            f"(seed 1000003, disjoint from validate-latency's)")  # fmt: skip
    device = store_scale(folder, "blocks", scales, note)
    if int8 is not None:
        device = device.model_copy(update=int8.terms(device))
        save_device(folder, device)
    return LatencyTable(device=device, rows=table.rows, folder=folder)
