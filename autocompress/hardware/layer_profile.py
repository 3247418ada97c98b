"""Build a module for each layer key, export it alone and time it on this machine: the rows of a
``source=measured`` layer table; and time whole networks end to end to fit the table's
``layer_scale``.

Each layer is timed as 1 copy and 8 copies (the slope, as ``profile.py`` does for blocks).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn

from autocompress._io import atomic_path
from autocompress.compress.quantize import quantize_int8
from autocompress.exceptions import BadInputError
from autocompress.hardware.layer_predict import predict_layers
from autocompress.hardware.layer_table import LayerKey, LayerRow, LayerSpec, load_layers
from autocompress.hardware.lut import DeviceSpec
from autocompress.hardware.profile import GROUP, copies_onnx
from autocompress.hardware.scale import Timed, fit_scales, unit_scale
from autocompress.runtime import INPUT_NAME, OPSET, measure_passes

MIN_LAYER_MS = 0.0005


_ACT_MODULES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid,
    "hardswish": nn.Hardswish, "tanh": nn.Tanh, "leakyrelu": nn.LeakyReLU, "none": nn.Identity,
    "clip": lambda: nn.Hardtanh(-1.0, 1.0), "silu": nn.SiLU, "gelu": nn.GELU,
}  # fmt: skip
_RESIZE = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}


def input_shape(key: LayerKey) -> tuple[int, ...]:
    """The shape (batch 1) of the tensor the layer's module takes when profiled alone."""
    if key.op == "concat":  # the same tensor ``inputs`` times: as many bytes as distinct ones
        return (1, max(1, round(key.in_c / key.inputs)), key.in_h, key.in_w)
    if key.op == "matmul" or (key.op == "linear" and key.in_h * key.in_w > 1):
        return (1, key.in_w, key.in_h, key.in_c)
    if key.op == "linear":
        return (1, key.in_c, 1, 1)
    return (1, key.in_c, key.in_h, key.in_w)


class _Layer(nn.Module):
    """One layer alone, built so that its export has the node pattern :func:`extract_layers` keys."""

    def __init__(self, key: LayerKey) -> None:
        super().__init__()
        self.key = key
        self.act = _ACT_MODULES[key.act]() if key.op != "act" else nn.Identity()
        pad = key.padding
        ceil = key.mode == "ceil"
        if key.op == "conv":
            self.body: nn.Module = nn.Conv2d(key.in_c, key.out_c, key.kernel, key.stride, key.kernel // 2,
                                             groups=key.groups)  # fmt: skip
        elif key.op == "linear":
            self.body = nn.Linear(key.in_c, key.out_c)
        elif key.op == "maxpool":
            self.body = nn.MaxPool2d(key.kernel, key.stride, pad, ceil_mode=ceil)
        elif key.op == "avgpool":
            self.body = nn.AvgPool2d(key.kernel, key.stride, pad, ceil_mode=ceil)
        elif key.op == "globalpool":
            self.body = nn.AdaptiveMaxPool2d(1) if key.mode == "max" else nn.AdaptiveAvgPool2d(1)
        elif key.op == "act":
            self.body = _ACT_MODULES[key.act]()
        elif key.op == "bn":
            self.body = nn.BatchNorm2d(key.in_c)
            with torch.no_grad():  # not the identity statistics a fresh module has
                self.body.running_mean.uniform_(-0.5, 0.5)
                self.body.running_var.uniform_(0.5, 1.5)
        elif key.op == "resize":
            self.body = nn.Upsample(scale_factor=key.stride / key.kernel, mode=_RESIZE[key.mode or "nearest"])
        elif key.op in ("add", "mul", "scale", "concat", "split", "slice", "transpose", "softmax"):
            self.body = nn.Identity()
            self.scale = nn.Parameter(torch.rand(1, key.in_c, 1, 1) + 0.5)
        elif key.op == "matmul":  # the second operand a parameter: [in_w, in_c, out_c]
            self.body = nn.Identity()
            self.scale = nn.Parameter(torch.rand(key.in_w, key.in_c, key.out_c) - 0.5)
        else:
            raise BadInputError(f"cannot profile layer op {key.op!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        key = self.key
        op = key.op
        if op == "linear":
            return self.act(self.body(torch.flatten(x, 1) if key.in_h * key.in_w == 1 else x))
        if op == "matmul":
            return self.act(torch.matmul(x, self.scale))
        if op == "add":
            return self.act(x + x)  # Add(x, x): two same-shape operands, as a residual add reads
        if op == "mul":
            return x * x
        if op == "scale":
            return x * self.scale
        if op == "concat":
            return self.act(torch.cat([x] * key.inputs, dim=1))
        if op == "split":
            size = -(-key.in_c // key.inputs)
            return torch.split(x, size, dim=1)
        if op == "slice":
            return x[:, : key.out_c]
        if op == "transpose":
            return x.permute(0, 2, 3, 1)
        if op == "softmax":
            return torch.log_softmax(x, -1) if key.mode == "log" else torch.softmax(x, -1)
        return self.act(self.body(x))


def _export(module: nn.Module, path: Path, shape: tuple[int, ...]) -> Path:
    """As :func:`autocompress.runtime.export_onnx`, for any input shape and any number of outputs."""
    out = module(torch.zeros(shape))
    n_out = len(out) if isinstance(out, tuple) else 1
    names = [f"output{i}" for i in range(n_out)]
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(shape),), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}},
                          do_constant_folding=True)  # fmt: skip
    return path


class _Half(nn.Module):
    """A layer stored and run in fp16, with casts at its edges (as a candidate's fp16 parts)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.inner(x.half())
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


def layer_onnx(key: LayerKey, workdir: Path, tag: str, runtime: str = "onnxruntime") -> Path:
    """The layer alone, exported and, for int8, quantized (zero-point-0 activations for
    TensorRT), for fp16 in half precision: ``workdir/tag.<precision>.onnx``."""
    fp32 = workdir / f"{tag}.fp32.onnx"
    shape = input_shape(key)
    if not fp32.exists():
        module = _Layer(replace(key, precision="fp32")).eval()
        with torch.no_grad():
            _export(module, fp32, shape)
    if key.precision == "fp32":
        return fp32
    if key.precision == "int8":
        calib = np.abs(np.random.default_rng(0).standard_normal((16, *shape[1:]), dtype=np.float32))
        return _name_nodes(quantize_int8(fp32, workdir / f"{tag}.int8.onnx", calib,
                                         symmetric_activations=runtime == "tensorrt"))  # fmt: skip
    if key.precision == "fp16":
        path = workdir / f"{tag}.fp16.onnx"
        with torch.no_grad():
            return _export(_Half(_Layer(replace(key, precision="fp32")).eval()), path, shape)
    raise BadInputError(f"cannot profile precision {key.precision!r} on this machine")


def _name_nodes(path: Path) -> Path:
    """Give unnamed nodes (the quantizer leaves some) unique names, so copies can be told apart."""
    model = onnx.load(str(path))
    if all(n.name for n in model.graph.node):
        return path
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"node_{i}"
    onnx.save(model, str(path))
    return path


def profile_layer_keys(
    keys: Sequence[LayerKey], *, threads: int = 1, reps: int = 60, passes: int = 3, copies: int = 8,
    runtime: str = "onnxruntime", on_progress: Callable[[int, int], None] | None = None,
) -> list[LayerRow]:  # fmt: skip
    """Time each layer as a graph of 1 copy and of ``copies`` copies (10th percentiles, fastest of
    ``passes`` passes); the row is the slope ``(T_k - T_1) / (k - 1)``, as for blocks."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths, shapes = [], []
        for i, key in enumerate(keys):
            one = layer_onnx(key, work, f"l{i}", runtime)
            paths += [one, copies_onnx(one, copies)]
            shapes += [input_shape(key)] * 2
            if on_progress:
                on_progress(i + 1, len(keys) * (1 + passes))
        timings = measure_passes(
            paths, shapes, passes=passes, group=GROUP, threads=threads, reps=reps, runtime=runtime,
            on_progress=(lambda d, t: on_progress(len(keys) + d // 2, len(keys) * (1 + passes))) if on_progress else None,
        )  # fmt: skip
    rows = []
    for j, key in enumerate(keys):
        one, many = timings[2 * j], timings[2 * j + 1]
        slope = (many.p10_ms - one.p10_ms) / (copies - 1)
        rows.append(LayerRow(key, max(MIN_LAYER_MS, slope), float(np.hypot(many.std_ms, one.std_ms) / (copies - 1)),
                             None, "measured"))  # fmt: skip
    return rows


@dataclass(frozen=True)
class Network:
    """A network to time end to end: its layers (from its fp32 ONNX), each layer's precision,
    and the deployed file (quantized where a layer runs int8) with its input shape."""

    layers: Sequence[LayerSpec]
    precisions: Sequence[str]
    path: Path
    input_shape: tuple[int, ...]


def fit_layer_scale(
    folder: Path, device: DeviceSpec, networks: Sequence[Network], *, reps: int = 50, passes: int = 3,
    seed: int = 1_000_003,
) -> dict[str, float]:  # fmt: skip
    """Time ``networks`` end to end with the table's runtime and threads and fit ``layer_scale``
    per precision (see :func:`autocompress.hardware.scale.fit_scales`): a network is fitted
    with the reduced precision it runs (its first), or with fp32 when it runs none. Store the
    result with :func:`autocompress.hardware.scale.store_scale`."""
    unit = unit_scale(device, "layers")
    table = load_layers(folder, device)
    preds = [predict_layers(unit, table, n.layers, n.precisions) for n in networks]
    timings = measure_passes([n.path for n in networks], [n.input_shape for n in networks], passes=passes,
                             group=GROUP, threads=int(device.host.get("threads") or 1), reps=reps,
                             runtime=device.runtime, seed=seed)  # fmt: skip
    groups: dict[str, list[Timed]] = {p: [] for p in device.precisions}
    for net, pred, t in zip(networks, preds, timings, strict=True):
        reduced = next((p for p in net.precisions if p != "fp32"), "fp32")
        groups.setdefault(reduced, []).append(Timed(pred, net.precisions, t.p10_ms))
    return fit_scales(groups)
