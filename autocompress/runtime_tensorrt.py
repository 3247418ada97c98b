"""Run exported ONNX files as TensorRT engines on an NVIDIA GPU and time them with CUDA events:
the ``tensorrt`` runtime of ``profile`` and ``validate-latency`` (on a Jetson, on the board).

An engine is built from the file as it is deployed: the builder's precision flags follow the
file (``FP16`` when it holds half-precision tensors, ``INT8`` when it holds QuantizeLinear /
DequantizeLinear pairs: explicit quantization, so no calibrator), as ``trtexec`` does with
``--fp16`` / ``--int8``. Buffers are torch CUDA tensors and the timing is a pair of
``torch.cuda.Event`` around ``execute_async_v3`` on a torch stream, so no pycuda is needed.

Needs the ``tensorrt`` Python package and a torch that sees a CUDA GPU; without either, one
:class:`~autocompress.exceptions.RuntimeUnavailableError` says which is missing.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from autocompress.exceptions import RuntimeUnavailableError

WORKSPACE_BYTES = 1 << 30  # builder scratch memory; tiny networks use a few MB of it
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeUnavailableError(
            "TensorRT is not installed: the tensorrt runtime needs an NVIDIA GPU and TensorRT's Python "
            "package (on a Jetson, JetPack's python3-libnvinfer; elsewhere: pip install tensorrt)"
        ) from None
    return trt


def check_available() -> None:
    """Fail with one line unless TensorRT is importable and torch sees a CUDA GPU."""
    trt = _trt()
    import torch

    if not torch.cuda.is_available():
        cuda = torch.version.cuda or "none: a CPU-only build"
        raise RuntimeUnavailableError(
            f"TensorRT {trt.__version__} is installed but torch {torch.__version__} (CUDA {cuda}) sees no "
            "CUDA GPU: the tensorrt runtime builds and times engines on an NVIDIA GPU"
        )


def version() -> str:
    """The installed TensorRT version."""
    return str(_trt().__version__)


def gpu_info() -> dict[str, object]:
    """What a measured TensorRT table records about the GPU it was timed on."""
    import torch

    props = torch.cuda.get_device_properties(0)
    return {"gpu": torch.cuda.get_device_name(0), "gpu_compute_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda}  # fmt: skip


def precision_flags(path: str | Path) -> list[str]:
    """The builder flags the file needs, as ``trtexec`` options: ``fp16`` when it stores
    half-precision tensors (the fp16 parts of a candidate), ``int8`` when it holds Q/DQ nodes."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    half = onnx.TensorProto.FLOAT16
    fp16 = any(i.data_type == half for i in graph.initializer) or any(
        n.op_type == "Cast" and any(a.name == "to" and a.i == half for a in n.attribute) for n in graph.node
    )
    int8 = any(n.op_type in _QDQ for n in graph.node)
    return [f for f, on in (("fp16", fp16), ("int8", int8)) if on]


@functools.cache
def _logger() -> Any:
    trt = _trt()
    return trt.Logger(trt.Logger.ERROR)


@functools.cache
def _runtime() -> Any:
    return _trt().Runtime(_logger())


_TIMING_CACHE: dict[str, Any] = {}  # one timing cache per process: blocks repeat layer shapes


def build_engine(path: str | Path, shape: tuple[int, ...]) -> bytes:
    """A serialized engine for ``path`` at the input ``shape`` (batch 1 in practice).

    Raises:
        RuntimeUnavailableError: TensorRT cannot parse or build the file (its errors quoted).
    """
    trt = _trt()
    path = Path(path)
    builder = trt.Builder(_logger())
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, _logger())
    if not parser.parse(path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeUnavailableError(f"TensorRT {trt.__version__} cannot parse {path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    for flag in precision_flags(path):
        config.set_flag(trt.BuilderFlag.FP16 if flag == "fp16" else trt.BuilderFlag.INT8)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if any(-1 in tuple(t.shape) for t in inputs):  # the exported batch axis is dynamic: fix it
        profile = builder.create_optimization_profile()
        for t in inputs:
            profile.set_shape(t.name, shape, shape, shape)
        config.add_optimization_profile(profile)
    if "cache" not in _TIMING_CACHE:
        _TIMING_CACHE["cache"] = config.create_timing_cache(b"")
    config.set_timing_cache(_TIMING_CACHE["cache"], False)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeUnavailableError(f"TensorRT {trt.__version__} could not build an engine for {path.name}")
    return bytes(blob)


@functools.lru_cache(maxsize=2048)
def _engine_bytes(path: str, mtime_ns: int, size: int, shape: tuple[int, ...]) -> bytes:
    return build_engine(path, shape)  # once per file and shape: passes re-time the same files


class Engine:
    """A TensorRT engine of one ONNX file with its input and outputs bound to CUDA buffers.

    Calling it runs the engine once on the bound input and returns the GPU time in ms between
    two CUDA events recorded around ``execute_async_v3`` on its stream.
    """

    def __init__(self, path: str | Path, x: np.ndarray) -> None:
        check_available()
        import torch

        trt = _trt()
        stat = Path(path).stat()
        self.engine = _runtime().deserialize_cuda_engine(
            _engine_bytes(str(path), stat.st_mtime_ns, stat.st_size, tuple(x.shape))
        )
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.buffers: dict[str, torch.Tensor] = {}
        self.input_names, self.output_names = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.context.set_input_shape(name, tuple(x.shape))
                self.input_names.append(name)
            else:
                self.output_names.append(name)
        for name in self.input_names + self.output_names:
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            shape = tuple(self.context.get_tensor_shape(name))
            self.buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
        self.set_input(x)
        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def set_input(self, x: np.ndarray) -> None:
        import torch

        buf = self.buffers[self.input_names[0]]
        buf.copy_(torch.from_numpy(np.ascontiguousarray(x)).to(buf.dtype))
        torch.cuda.synchronize()

    def __call__(self) -> float:
        self.start.record(self.stream)
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeUnavailableError("TensorRT failed to run an engine (execute_async_v3 returned False)")
        self.end.record(self.stream)
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The first output for input ``x`` (same shape as the bound one), as float32."""
        self.set_input(x)
        self()
        return self.buffers[self.output_names[0]].float().cpu().numpy()


def trtexec_command(path: str | Path, *, warmup_ms: int = 500, iterations: int = 1000, avg_runs: int = 100) -> str:
    """The ``trtexec`` command that builds and times ``path`` on the device the way this module
    does: the file's own precision flags, its input name, and its input shape at batch 1.

    Run it in the folder holding the file (the command names it without a folder).
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    init = {i.name for i in graph.initializer}
    inp = next(i for i in graph.input if i.name not in init)
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in inp.type.tensor_type.shape.dim]
    flags = " ".join(f"--{f}" for f in precision_flags(path))
    return (f"trtexec --onnx={Path(path).name}{' ' + flags if flags else ''} --shapes={inp.name}:"
            f"{'x'.join(map(str, dims))} --warmUp={warmup_ms} --iterations={iterations} --avgRuns={avg_runs}")  # fmt: skip


def nonzero_zero_points(path: str | Path) -> int:
    """How many QuantizeLinear/DequantizeLinear nodes of ``path`` have a non-zero zero point (an
    asymmetric int8 file, which TensorRT's ONNX parser rejects)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    zero_points = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return sum(1 for n in graph.node if n.op_type in _QDQ and len(n.input) > 2
               and n.input[2] in zero_points and np.any(zero_points[n.input[2]] != 0))  # fmt: skip
