"""The one deploy step every problem uses: float file -> PTQ -> QAT if PTQ lost too much -> keep the better.

    torch model --export--> float ONNX --ptq (ORT quantize_static, or NNCF for OpenVINO)--> int8 file
        if the int8 file loses more than ``threshold_pp`` of validation accuracy and QAT is
        allowed: fake-quantized fine-tune --export--> --ptq--> second int8 file, kept only when
        it scores better on validation

The caller says how to export a network, which ONNX nodes stay in float, how to fine-tune with
fake quantization, and how to measure validation accuracy (by the target's runtime); this module
owns the order of the steps, the comparison and the atomic write of the deployed file.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from autocompress._io import atomic_path
from autocompress.compress.quantize import quantize_int8, quantize_int8_nncf


@dataclass(frozen=True)
class Quantization:
    """How the int8 parts are quantized. ``keep_float``: ONNX node-name prefixes left in float
    (everything when no part is int8: ``int8`` False)."""

    int8: bool
    keep_float: tuple[str, ...] = ()
    method: str = "minmax"
    runtime: str = "onnxruntime"  # the target's: OpenVINO targets quantize with NNCF


def ptq(src: Path, dst: Path, calibration: np.ndarray, quant: Quantization) -> Path:
    """Post-training quantization of the float file ``src`` into ``dst`` (a copy when nothing is int8)."""
    if not quant.int8:
        with atomic_path(dst) as tmp:
            tmp.write_bytes(Path(src).read_bytes())
        return dst
    if quant.runtime == "openvino":
        return quantize_int8_nncf(src, dst, calibration, exclude_prefixes=list(quant.keep_float), method=quant.method)
    # TensorRT targets: zero-point-0 activations, the only int8 TensorRT's ONNX parser takes
    return quantize_int8(src, dst, calibration, exclude_prefixes=list(quant.keep_float), method=quant.method,
                         symmetric_activations=quant.runtime == "tensorrt")  # fmt: skip


def float_nodes_outside(src: Path, int8_prefixes: Iterable[str]) -> tuple[str, ...]:
    """Names of the nodes of ``src`` outside the int8 prefixes (they stay float)."""
    import onnx

    int8 = tuple(int8_prefixes)
    names = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node]
    return tuple(n for n in names if n and not n.startswith(int8))


def deploy(
    model: nn.Module,
    dest: Path,
    *,
    export: Callable[[nn.Module, Path], Path],
    quantization: Callable[[Path], Quantization],
    calibration: np.ndarray,
    val_accuracy: Callable[[Path], float],
    qat: Callable[[nn.Module], nn.Module] | None = None,
    threshold_pp: float = 0.5,
    scratch: Path | None = None,
) -> dict[str, Any]:
    """Deploy ``model`` to ``dest`` (written atomically) and say how it was quantized.

    Args:
        export: writes a network's float ONNX file to the given path.
        quantization: for an exported float file, how to quantize it (which nodes stay float).
        val_accuracy: a deployable file's validation accuracy, by the target's runtime.
        qat: a fake-quantized fine-tune of ``model`` (None: QAT not allowed for this candidate).
        threshold_pp: QAT runs only when PTQ lost more than this many percentage points.
        scratch: where temporary files go (a folder beside ``dest`` by default).

    Returns:
        For int8 candidates: ``float_val_accuracy``, ``ptq_drop_pp`` and, when QAT ran,
        ``qat_val_accuracy`` and ``qat_applied``; nothing otherwise.
    """
    dest = Path(dest)
    parent = scratch or dest.parent
    with tempfile.TemporaryDirectory(dir=parent, prefix=f".{dest.stem}") as tmp:
        tmp_dir = Path(tmp)

        def build(net: nn.Module, name: str) -> tuple[Path, Path, Quantization]:
            float_file, out = tmp_dir / f"{name}.float.onnx", tmp_dir / f"{name}.onnx"
            export(net, float_file)
            quant = quantization(float_file)
            return float_file, ptq(float_file, out, calibration, quant), quant

        float_file, best, quant = build(model, "ptq")
        info: dict[str, Any] = {}
        if quant.int8:
            float_val = val_accuracy(float_file)
            best_val = val_accuracy(best)
            drop = 100 * (float_val - best_val)
            info = {"float_val_accuracy": float_val, "ptq_drop_pp": round(drop, 3)}
            if qat is not None and drop > threshold_pp:
                _, qat_file, _ = build(qat(model), "qat")
                qat_val = val_accuracy(qat_file)
                info["qat_val_accuracy"] = qat_val
                if qat_val > best_val:
                    best, info["qat_applied"] = qat_file, True
        with atomic_path(dest) as out:
            shutil.copyfile(best, out)
    return info
