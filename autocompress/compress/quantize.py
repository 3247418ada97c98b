"""Post-training quantization of exported ONNX files with ONNX Runtime (static, QDQ)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from autocompress._io import atomic_path
from autocompress.runtime import INPUT_NAME


class _Reader:
    """ONNX Runtime's CalibrationDataReader over an array of inputs."""

    def __init__(self, images: np.ndarray, batch_size: int) -> None:
        self._batches = iter(
            [{INPUT_NAME: images[i : i + batch_size]} for i in range(0, len(images), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax
        raise NotImplementedError


def quantize_int8(
    src: str | Path,
    dst: str | Path,
    calibration: np.ndarray,
    *,
    exclude_prefixes: Iterable[str] = (),
    per_channel: bool = True,
    method: str = "minmax",
    batch_size: int = 64,
) -> Path:
    """Static int8 QDQ quantization (``quant_pre_process`` then ``quantize_static``).

    Args:
        src: the fp32 ONNX file.
        dst: where the quantized file goes (written atomically).
        calibration: float32 inputs (N, C, H, W) from a held-out part of the training data.
        exclude_prefixes: nodes whose names start with one of these stay in float (mixed
            precision; the exporter names nodes after module paths, e.g. ``/stem/``).
        per_channel: per-output-channel weight scales.
        method: calibration method: ``minmax``, ``entropy`` or ``percentile``.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    src, dst = Path(src), Path(dst)
    prefixes = tuple(exclude_prefixes)
    graph = onnx.load(str(src)).graph
    exclude = [n.name for n in graph.node if prefixes and n.name.startswith(prefixes)]
    # ONNX Runtime's graph optimisation would rewrite fp16 parts for the CPU (a Cast to fp32 in
    # front of every fp16 conv) and save that: keep the deployable fp16 parts as exported
    has_fp16 = any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    with tempfile.TemporaryDirectory() as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True, skip_optimization=has_fp16)
        with atomic_path(dst) as tmp:
            quantize_static(
                str(pre),
                str(tmp),
                _Reader(np.ascontiguousarray(calibration, dtype=np.float32), batch_size),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=methods[method],
                nodes_to_exclude=exclude,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
    return dst
