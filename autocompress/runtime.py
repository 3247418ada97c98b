"""Export to ONNX and run exported files with ONNX Runtime: accuracy and wall-clock latency."""

from __future__ import annotations

import os
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autocompress._io import atomic_path

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def export_onnx(model: torch.nn.Module, path: str | Path, *, channels: int, resolution: int) -> Path:
    """Export ``model`` to a single self-contained ONNX file with a dynamic batch axis.

    Uses the TorchScript exporter (``dynamo=False``): ~15 ms per small model instead of 2-5 s
    for the dynamo exporter, one file (no ``.onnx.data`` beside it), BN folded into convs, and
    node names that keep the module path (``/stages.1/...``), which per-stage quantization uses.
    """
    path = Path(path)
    model = model.eval()
    dummy = torch.zeros(1, channels, resolution, resolution)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    return path


def model_size(path: str | Path) -> int:
    """Bytes of a deployed model: the file plus any external-data file beside it."""
    path = Path(path)
    size = path.stat().st_size
    for extra in (path.with_name(path.name + ".data"), path.with_suffix(".data")):
        if extra.is_file():
            size += extra.stat().st_size
    return size


def session(path: str | Path, *, threads: int = 1):
    """An ONNX Runtime CPU session with pinned thread counts (sequential execution)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_accuracy(
    path: str | Path, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500,
    threads: int | None = None,
) -> float:  # fmt: skip
    """Top-1 accuracy of the exported file as ONNX Runtime runs it."""
    sess = session(path, threads=threads or os.cpu_count() or 1)
    x = images.numpy().astype(np.float32, copy=False)
    y = labels.numpy()
    correct = 0
    for start in range(0, len(y), batch_size):
        out = sess.run([OUTPUT_NAME], {INPUT_NAME: x[start : start + batch_size]})[0]
        correct += int((out.argmax(1) == y[start : start + batch_size]).sum())
    return correct / max(1, len(y))


@dataclass(frozen=True)
class Timing:
    median_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    reps: int


def measure_latency(
    paths: list[Path], *, shape: tuple[int, ...] | list[tuple[int, ...]], threads: int = 1,
    warmup: int = 10, reps: int = 50, rounds: int = 5,
) -> list[Timing]:  # fmt: skip
    """Batch-1 wall-clock latency of several models, interleaved so drift hits all alike.

    Each model is warmed up, then ``rounds`` rounds run every model ``reps / rounds`` times in
    turn; the median and spread are over all repetitions.
    """
    shapes = shape if isinstance(shape, list) else [shape] * len(paths)
    sessions = [session(p, threads=threads) for p in paths]
    inputs = [np.random.default_rng(0).random(s, dtype=np.float32) for s in shapes]
    out_names = [s.get_outputs()[0].name for s in sessions]
    in_names = [s.get_inputs()[0].name for s in sessions]
    for sess, x, i, o in zip(sessions, inputs, in_names, out_names):
        for _ in range(warmup):
            sess.run([o], {i: x})
    samples: list[list[float]] = [[] for _ in paths]
    per_round = max(1, reps // rounds)
    for _ in range(rounds):
        for k, (sess, x, i, o) in enumerate(zip(sessions, inputs, in_names, out_names)):
            for _ in range(per_round):
                t0 = time.perf_counter()
                sess.run([o], {i: x})
                samples[k].append((time.perf_counter() - t0) * 1000.0)
    out = []
    for s in samples:
        q = np.percentile(s, [10, 90])
        out.append(Timing(statistics.median(s), float(np.std(s)), float(q[0]), float(q[1]), len(s)))
    return out
