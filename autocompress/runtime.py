"""Export to ONNX and run exported files with ONNX Runtime or OpenVINO: accuracy and
wall-clock latency; latency also as TensorRT engines on a GPU (``runtime_tensorrt``)."""

from __future__ import annotations

import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autocompress._io import atomic_path
from autocompress.exceptions import RuntimeUnavailableError

if TYPE_CHECKING:  # torch is imported where a model is exported: the latency tools run without it
    import torch

log = logging.getLogger(__name__)

CONFIRM = 0.05  # a model's fastest pass counts once another pass repeats it within this share
EXTRA_PASSES = 3  # at most this many more passes over the models whose fastest pass did not repeat

RUNTIMES = ("onnxruntime", "openvino")  # run on this CPU: accuracy and latency
TIMED_RUNTIMES = (*RUNTIMES, "tensorrt")  # latency only (TensorRT: on an NVIDIA GPU)
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def export_onnx(model: torch.nn.Module, path: str | Path, *, channels: int, resolution: int) -> Path:
    """Export ``model`` to a single self-contained ONNX file with a dynamic batch axis.

    Uses the TorchScript exporter (``dynamo=False``): ~15 ms per small model instead of 2-5 s
    for the dynamo exporter, one file (no ``.onnx.data`` beside it), BN folded into convs, and
    node names that keep the module path (``/stages.1/...``), which per-stage quantization uses.
    """
    import torch

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


def accuracy(
    path: str | Path, images: torch.Tensor, labels: torch.Tensor, *, runtime: str = "onnxruntime",
    batch_size: int = 500,
) -> float:  # fmt: skip
    """Top-1 accuracy of the exported file as ``runtime`` (onnxruntime or openvino) runs it."""
    if runtime == "onnxruntime":
        return ort_accuracy(path, images, labels, batch_size=batch_size)
    run = runner(path, runtime=runtime, threads=os.cpu_count() or 1)
    x = images.numpy().astype(np.float32, copy=False)
    y = labels.numpy()
    correct = sum(
        int((run(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(y), batch_size)
    )
    return correct / max(1, len(y))


def accuracy_runtime(device_runtime: str) -> str:
    """Which runtime measures a target's accuracy: its own where we have it, else ONNX Runtime."""
    return device_runtime if device_runtime in RUNTIMES else "onnxruntime"


@dataclass(frozen=True)
class Timing:
    median_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    reps: int
    passes: int = 1  # passes it was timed in (``measure_passes``)
    repeated: bool = True  # whether a second pass repeated its fastest 10th percentile (``measure_passes``)


@contextmanager
def pinned_cpus(n: int) -> Iterator[list[int]]:
    """Pin this process to its first ``n`` allowed CPUs while timing (0: leave it alone).

    Yields the CPUs pinned to, so tables can record them; restores the old affinity after.
    """
    if n <= 0 or not hasattr(os, "sched_setaffinity"):
        yield []
        return
    before = os.sched_getaffinity(0)
    cpus = sorted(before)[:n]
    os.sched_setaffinity(0, cpus)
    try:
        yield cpus
    finally:
        os.sched_setaffinity(0, before)


def runtime_version(runtime: str) -> str:
    """The installed version of ``runtime`` (one of :data:`TIMED_RUNTIMES`)."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        return ort.__version__
    if runtime == "tensorrt":
        from autocompress.runtime_tensorrt import version

        return version()
    return _openvino().__version__.split("-")[0]


def _openvino():  # noqa: ANN202
    try:
        import openvino
    except ImportError:
        raise RuntimeUnavailableError(
            "OpenVINO is not installed; install it with: pip install 'autocompress[openvino]'"
        ) from None
    return openvino


def openvino_model(path: str | Path, *, threads: int = 1):  # noqa: ANN201
    """An OpenVINO CPU compiled model: latency hint, one stream, ``threads`` threads pinned, fp32
    inference precision (int8 where the file carries QDQ nodes)."""
    ov = _openvino()
    import openvino.properties as props
    import openvino.properties.hint as hints
    import openvino.properties.streams as streams

    config = {
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        streams.num: 1,
        props.inference_num_threads: threads,
        hints.enable_cpu_pinning: True,
        hints.inference_precision: ov.Type.f32,
    }
    return ov.Core().compile_model(str(path), "CPU", config)


def runner(
    path: str | Path, *, runtime: str = "onnxruntime", threads: int = 1
) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``x -> logits`` running the exported file with ``runtime`` on the CPU."""
    if runtime == "onnxruntime":
        sess = session(path, threads=threads)
        in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name
        return lambda x: sess.run([out_name], {in_name: x})[0]
    if runtime == "openvino":
        compiled = openvino_model(path, threads=threads)
        request = compiled.create_infer_request()
        output = compiled.output(0)
        return lambda x: request.infer({0: x})[output]
    raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")


def measure_passes(
    paths: list[Path], shapes: list[tuple[int, ...]], *, passes: int = 3, group: int = 24, threads: int = 1,
    reps: int = 50, runtime: str = "onnxruntime", seed: int = 0, confirm: float | None = CONFIRM,
    extra_passes: int = EXTRA_PASSES, warn: bool = False, on_progress: Callable[[int, int], None] | None = None,
) -> list[Timing]:  # fmt: skip
    """Time many models in ``passes`` passes spread over time, each pass in a new random order
    and grouping (``group`` models interleaved at once, see :func:`measure_latency`).

    A model's timing is its fastest pass (the lowest 10th percentile and median): on a shared
    machine another process slows a whole group while it runs, never speeds it up, and a
    group-long disturbance is what a single pass cannot tell from the model's own latency.

    A fastest pass counts once it is **repeated**: another pass of the model came within
    ``confirm`` (5%) of it, and in one of those passes the models of its group ran at their own
    fastest too (their median within ``confirm``: the machine was not slow as a whole then). Models
    whose fastest pass is not repeated are timed again, up to ``extra_passes`` more passes over
    them (each group filled up to ``group`` with other models, so every model is timed among as
    many others as in the first passes). On a machine whose speed changes for seconds or minutes
    at a time (a VM whose host is busy), a model timed only while the machine was slow is timed again
    instead of keeping a slow figure. Which models are re-timed depends on the timings alone,
    never on a prediction. Those still not repeated come back with ``repeated=False`` for the
    caller to report (with ``warn``, one logged warning says how many: ``profile``, which has no
    other place to say it). With ``confirm=None`` or a single pass, nothing is re-timed.
    """
    if passes < 1 or group < 1:
        raise ValueError(f"passes and group must be >= 1; got {passes}, {group}")
    n = len(paths)
    best: list[Timing | None] = [None] * n
    runs: list[list[tuple[int, float]]] = [[] for _ in range(n)]  # (group number, 10th percentile) per pass
    members: list[list[int]] = []  # the models of each group timed, in order
    rng = np.random.default_rng(seed)
    done, total = 0, passes * n

    def time_group(idx: list[int]) -> None:
        nonlocal done
        timings = measure_latency([paths[i] for i in idx], shape=[shapes[i] for i in idx], threads=threads,
                                  reps=reps, runtime=runtime)  # fmt: skip
        for i, t in zip(idx, timings):
            old = best[i]
            runs[i].append((len(members), t.p10_ms))
            best[i] = t if old is None else Timing(
                min(old.median_ms, t.median_ms), min(old.std_ms, t.std_ms), min(old.p10_ms, t.p10_ms),
                min(old.p90_ms, t.p90_ms), old.reps + t.reps,
            )  # fmt: skip
        members.append(idx)
        done += len(idx)
        if on_progress:
            on_progress(min(done, total), total)

    for _ in range(passes):
        order = rng.permutation(n)
        for start in range(0, n, group):
            time_group([int(i) for i in order[start : start + group]])
    check = confirm is not None and passes >= 2
    ok = repeated(runs, members, confirm) if check else [True] * n  # type: ignore[arg-type]
    extra = 0
    while extra < extra_passes and not all(ok):
        extra += 1
        pending = [i for i in range(n) if not ok[i]]
        others = [i for i in range(n) if ok[i]]  # fillers: models already repeated
        order = [int(i) for i in rng.permutation(pending)]
        for start in range(0, len(order), group):
            idx = order[start : start + group]
            fill = min(group - len(idx), len(others))
            time_group(idx + [int(i) for i in rng.choice(others, size=fill, replace=False)] if fill else idx)
        ok = repeated(runs, members, confirm)  # type: ignore[arg-type]
    out = [
        Timing(t.median_ms, t.std_ms, t.p10_ms, t.p90_ms, t.reps, len(runs[i]), ok[i])
        for i, t in enumerate(best) if t is not None
    ]  # fmt: skip
    loose = sum(not t.repeated for t in out)
    if loose:
        (log.warning if warn else log.info)(
            "%d of %d timings did not repeat within %.0f%% in %d passes: this machine's speed changed while "
            "timing (other work, or its host); those figures may be slow. Time again on a quiet machine.",
            loose, n, 100 * (confirm or 0.0), passes + extra,
        )  # fmt: skip
    return out


def repeated(runs: list[list[tuple[int, float]]], members: list[list[int]], confirm: float) -> list[bool]:
    """Per model: whether its fastest pass is repeated (see :func:`measure_passes`), given each
    model's (group number, 10th percentile) per pass and the models of each group."""
    fastest = [min(ms for _, ms in r) for r in runs]
    # how slow the machine ran while each group was timed: the median over its models of their
    # time in it over their fastest time in any pass (1.0: every model at its fastest)
    slow = [float(np.median([next(ms for g, ms in runs[i] if g == k) / fastest[i] for i in idx]))
            for k, idx in enumerate(members)]  # fmt: skip
    out = []
    for r, low in zip(runs, fastest):
        close = [g for g, ms in r if ms <= low * (1.0 + confirm)]
        out.append(len(close) >= 2 and any(slow[g] <= 1.0 + confirm for g in close))
    return out


def bound_runner(
    path: str | Path, x: np.ndarray, *, runtime: str = "onnxruntime", threads: int = 1
) -> Callable[[], None]:
    """A zero-argument call running the file on the fixed input ``x`` with every input and output
    bound to buffers allocated once, so repeated timing measures the graph, not per-call
    allocation of its outputs (which would scale with a graph's output count)."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        sess = session(path, threads=threads)
        binding = sess.io_binding()
        binding.bind_ortvalue_input(sess.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(x))
        for out in sess.get_outputs():
            binding.bind_output(out.name, "cpu")
        sess.run_with_iobinding(binding)  # allocates the outputs once; later runs reuse them
        for name, value in zip([o.name for o in sess.get_outputs()], binding.get_outputs()):
            binding.bind_ortvalue_output(name, value)
        return lambda: sess.run_with_iobinding(binding)
    if runtime == "openvino":
        compiled = openvino_model(path, threads=threads)
        request = compiled.create_infer_request()
        request.set_input_tensor(0, _openvino().Tensor(x))
        return lambda: request.infer()
    raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")


def bound_timer(
    path: str | Path, x: np.ndarray, *, runtime: str = "onnxruntime", threads: int = 1
) -> Callable[[], float]:
    """A zero-argument call that runs the file once on ``x`` and returns how long it took (ms):
    wall-clock around :func:`bound_runner` on the CPU, CUDA events around the engine's
    execution for TensorRT (``runtime_tensorrt.Engine``)."""
    if runtime == "tensorrt":
        from autocompress.runtime_tensorrt import Engine

        return Engine(path, x)
    run = bound_runner(path, x, runtime=runtime, threads=threads)

    def timed() -> float:
        t0 = time.perf_counter()
        run()
        return (time.perf_counter() - t0) * 1000.0

    return timed


def measure_latency(
    paths: list[Path], *, shape: tuple[int, ...] | list[tuple[int, ...]], threads: int = 1,
    warmup: int = 10, reps: int = 50, rounds: int = 5, runtime: str = "onnxruntime",
) -> list[Timing]:  # fmt: skip
    """Batch-1 latency of several models (wall clock; GPU time by CUDA events for TensorRT),
    interleaved so drift hits all alike.

    Each model is warmed up, then ``rounds`` rounds run every model ``reps / rounds`` times in
    turn; the median and spread are over all repetitions.
    """
    shapes = shape if isinstance(shape, list) else [shape] * len(paths)
    inputs = [np.random.default_rng(0).random(s, dtype=np.float32) for s in shapes]
    runs = [bound_timer(p, x, runtime=runtime, threads=threads) for p, x in zip(paths, inputs)]
    for run in runs:
        for _ in range(warmup):
            run()
    samples: list[list[float]] = [[] for _ in paths]
    per_round = max(1, reps // rounds)
    for _ in range(rounds):
        for k, run in enumerate(runs):
            for _ in range(per_round):
                samples[k].append(run())
    out = []
    for s in samples:
        q = np.percentile(s, [10, 90])
        out.append(Timing(statistics.median(s), float(np.std(s)), float(q[0]), float(q[1]), len(s)))
    return out


def onnx_params(path: str | Path) -> int:
    """Number of weights stored in an ONNX file (its initializers)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for init in model.graph.initializer:
        n = 1
        for d in init.dims:
            n *= d
        total += n
    return total
