"""Post-training int8 quantization of exported ONNX files, static, QDQ, per-channel weights:
with ONNX Runtime's ``quantize_static`` (targets that run ONNX Runtime, TensorRT, ...) or with
NNCF's ``nncf.quantize`` (targets that run OpenVINO; NNCF places the QDQ pairs where OpenVINO's
CPU plugin fuses them). Both write a QDQ ONNX file that either runtime loads."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from autocompress._io import atomic_path
from autocompress.exceptions import CompressionUnavailableError, RuntimeUnavailableError
from autocompress.runtime import INPUT_NAME

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# NNCF's range estimators for the same names; NNCF has no entropy (KL) estimator
NNCF_METHODS = ("minmax", "percentile")


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
    symmetric_activations: bool = False,
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
        symmetric_activations: activation zero points 0 (TensorRT accepts no other: its ONNX
            parser rejects a non-zero zero point); asymmetric by default (ONNX Runtime uses the
            int8 range better on post-ReLU tensors).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    check_method(method, "onnxruntime")
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
                extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True},
            )
    return dst


def check_method(method: str, runtime: str) -> None:
    allowed = NNCF_METHODS if runtime == "openvino" else CALIBRATION_METHODS
    if method not in allowed:
        via = "NNCF (OpenVINO targets)" if runtime == "openvino" else "ONNX Runtime"
        raise CompressionUnavailableError(
            f"calibration method {method!r} is not available with {via}; use one of {', '.join(allowed)}"
        )


def quantize_int8_nncf(
    src: str | Path,
    dst: str | Path,
    calibration: np.ndarray,
    *,
    exclude_prefixes: Iterable[str] = (),
    method: str = "minmax",
    batch_size: int = 50,
) -> Path:
    """Static int8 quantization with NNCF (``nncf.quantize`` on the ONNX model).

    The result is a QDQ ONNX file with int8 weights, laid out for OpenVINO's CPU plugin (which
    reads ONNX directly); stages kept in float are NNCF's ignored scope. ``method`` picks the
    activation range estimator: ``minmax`` (NNCF's default for int8 CPU) or ``percentile``
    (mean of per-batch 0.01%/99.99% quantiles).
    """
    check_method(method, "openvino")
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    except ImportError:
        raise RuntimeUnavailableError(
            "NNCF is not installed; OpenVINO targets quantize with it: pip install 'autocompress[openvino]'"
        ) from None
    import logging

    nncf.set_log_level(logging.ERROR)  # one INFO line per node it leaves alone, otherwise
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    input_name = model.graph.input[0].name
    images = np.ascontiguousarray(calibration, dtype=np.float32)
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    prefixes = tuple(exclude_prefixes)
    ignored = [n.name for n in model.graph.node if prefixes and n.name.startswith(prefixes)]
    advanced = AdvancedQuantizationParameters()
    if method == "percentile":
        advanced.activations_range_estimator_params = RangeEstimatorParametersSet.MEAN_QUANTILE
    quantized = nncf.quantize(
        model,
        nncf.Dataset(batches, lambda x: {input_name: x}),
        preset=nncf.QuantizationPreset.MIXED,  # symmetric weights, asymmetric activations, as ORT
        subset_size=len(batches),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
        advanced_parameters=advanced,
    )
    with atomic_path(dst) as tmp:
        onnx.save(quantized, str(tmp))
    return dst
