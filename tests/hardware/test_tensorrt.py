"""The TensorRT runtime: what runs on any machine (the files engines are built from, their
precision flags, the trtexec command in the model card, one-line errors without TensorRT or a
GPU), and, where TensorRT and a CUDA GPU are, engines that agree with ONNX Runtime and a measured
table of the tiny space."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from autocompress.compress.deploy import Quantization, ptq
from autocompress.hardware.profile import block_onnx, copies_onnx
from autocompress.hardware.validate import build_model
from autocompress.runtime import runner
from autocompress.runtime_tensorrt import nonzero_zero_points, precision_flags, trtexec_command
from autocompress.space import load_space
from tests.helpers import ROOT, assert_one_line_error, cli

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_gpu_trt = pytest.mark.skipif(
    not (HAS_TRT and torch.cuda.is_available()),
    reason="needs TensorRT's Python package and a CUDA GPU (tensorrt importable: "
    f"{HAS_TRT}, torch.cuda.is_available(): {torch.cuda.is_available()})",
)
needs_no_trt = pytest.mark.skipif(HAS_TRT, reason="checks the error a machine without TensorRT gives")


def _candidate(precision: str):
    from dataclasses import replace

    space = load_space("tiny")
    cand = space.largest()
    mixes = {"fp32": ("fp32",) * len(cand.precision), "fp16": ("fp16",) * len(cand.precision),
             "int8": ("int8",) * len(cand.precision),
             "mixed": ("int8",) * (len(cand.precision) - 1) + ("fp16",)}  # fmt: skip
    return replace(cand, precision=mixes[precision]), space


@pytest.mark.parametrize(("precision", "flags"), [("fp32", []), ("fp16", ["fp16"]), ("int8", ["int8"]),
                                                   ("mixed", ["fp16", "int8"])])  # fmt: skip
def test_engine_flags_and_trtexec_command_follow_the_deployed_file(tmp_path, precision, flags) -> None:
    cand, space = _candidate(precision)
    path = build_model(cand, space, 1, 10, tmp_path, f"net-{precision}", "tensorrt")
    assert precision_flags(path) == flags
    cmd = trtexec_command(path)
    res = cand.resolution
    assert cmd.startswith(f"trtexec --onnx={path.name} ")
    assert f"--shapes=input:1x1x{res}x{res}" in cmd
    for f in ("fp16", "int8"):
        assert (f"--{f}" in cmd) == (f in flags)


def test_tensorrt_targets_quantize_with_zero_point_0_activations(tmp_path) -> None:
    """TensorRT's ONNX parser rejects a non-zero zero point: the int8 files of a TensorRT target
    have none; the CPU targets keep asymmetric activations."""
    cand, space = _candidate("int8")
    for_trt = build_model(cand, space, 1, 10, tmp_path, "trt", "tensorrt")
    for_ort = build_model(cand, space, 1, 10, tmp_path, "ort", "onnxruntime")
    assert nonzero_zero_points(for_trt) == 0
    assert nonzero_zero_points(for_ort) > 0
    # and ONNX Runtime (which scores accuracy in the search) runs the symmetric file
    x = np.random.default_rng(0).random((4, 1, cand.resolution, cand.resolution), dtype=np.float32)
    assert np.isfinite(runner(for_trt)(x)).all()
    calib = np.random.default_rng(1).random((16, 1, cand.resolution, cand.resolution), dtype=np.float32)
    fp32 = build_model(_candidate("fp32")[0], space, 1, 10, tmp_path, "f", "tensorrt")
    out = ptq(fp32, tmp_path / "deployed.onnx", calib, Quantization(int8=True, runtime="tensorrt"))
    assert nonzero_zero_points(out) == 0


def test_fp16_block_shares_its_input_cast_across_copies(tmp_path) -> None:
    from autocompress.arch import all_blocks

    spec = next(b for b in all_blocks(load_space("tiny"), 1, 10) if b.op == "mbconv")
    one = block_onnx(spec, "fp16", tmp_path, "b0", np.zeros((1,)), "tensorrt")
    assert precision_flags(one) == ["fp16"]
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(one)).graph.initializer)
    many = onnx.load(str(copies_onnx(one, 4)))
    onnx.checker.check_model(many)
    casts_of_input = [n for n in many.graph.node if n.op_type == "Cast" and n.input[0] == many.graph.input[0].name]
    assert len(casts_of_input) == 1 and len(many.graph.output) == 4


@pytest.mark.parametrize("op", ["conv", "split", "resize"])
def test_layers_for_tensorrt_are_half_precision_or_zero_point_0_files(tmp_path, op) -> None:
    from autocompress.hardware.layer_profile import layer_onnx
    from autocompress.hardware.layer_table import LayerKey

    key = {"conv": LayerKey("conv", 16, 16, 8, 16, 3, 1, 1, "relu", "fp16"),
           "split": LayerKey("split", 16, 16, 8, 8, 1, 1, 1, "none", "fp16", inputs=2),
           "resize": LayerKey("resize", 8, 8, 8, 8, 1, 2, 1, "none", "fp16", mode="bilinear")}[op]  # fmt: skip
    half = layer_onnx(key, tmp_path, "h", "tensorrt")
    assert precision_flags(half) == ["fp16"]
    assert len(onnx.load(str(half)).graph.output) == (2 if op == "split" else 1)
    if op == "conv":
        from dataclasses import replace

        int8 = layer_onnx(replace(key, precision="int8"), tmp_path, "q", "tensorrt")
        assert precision_flags(int8) == ["int8"] and nonzero_zero_points(int8) == 0


@needs_no_trt
def test_profile_tensorrt_without_tensorrt_is_one_line_exit_2(tmp_path) -> None:
    proc = cli("profile", "--space", "tiny", "--runtime", "tensorrt", "--out", str(tmp_path / "t"))
    assert_one_line_error(proc, 2, "TensorRT is not installed")
    assert not (tmp_path / "t").exists()


@needs_no_trt
def test_validate_latency_on_a_tensorrt_table_without_tensorrt_is_one_line_exit_2(tmp_path) -> None:
    """A TensorRT table measured on a board, validated on a machine without TensorRT."""
    table = tmp_path / "tables" / "board-tensorrt"
    shutil.copytree(ROOT / "hw_latency_tables" / "x86-cpu-onnxruntime", table)
    device = yaml.safe_load((table / "device.yaml").read_text())
    device.update(name="board-tensorrt", aliases=[], runtime="tensorrt", runtime_version="10.3.0")
    (table / "device.yaml").write_text(yaml.safe_dump(device))
    proc = cli("validate-latency", "--target", "board-tensorrt", "--space", "tiny", "-n", "3",
               "--out", str(tmp_path / "v"), env={"AUTOCOMPRESS_TABLES": str(tmp_path / "tables")})  # fmt: skip
    assert_one_line_error(proc, 2, "TensorRT is not installed")
    assert not (tmp_path / "v" / "validation.json").exists()


# --------------------------------------------------------------------------- GPU + TensorRT only


@needs_gpu_trt
def test_engine_runs_the_file_as_onnx_runtime_does(tmp_path) -> None:
    from autocompress.runtime_tensorrt import Engine

    cand, space = _candidate("fp32")
    path = build_model(cand, space, 1, 10, tmp_path, "net", "tensorrt")
    x = np.random.default_rng(0).random((1, 1, cand.resolution, cand.resolution), dtype=np.float32)
    engine = Engine(path, x)
    np.testing.assert_allclose(engine.infer(x), runner(path)(x), rtol=1e-2, atol=1e-2)
    times = [engine() for _ in range(20)]
    assert all(0 < t < 100 for t in times)


@needs_gpu_trt
def test_profile_tensorrt_writes_a_measured_table_with_the_gpu(tmp_path) -> None:
    out = tmp_path / "gpu-table"
    proc = cli("profile", "--space", "tiny", "--runtime", "tensorrt", "--out", str(out), "--reps", "20",
               "--passes", "1", "--networks", "3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    device = yaml.safe_load((out / "device.yaml").read_text())
    assert device["source"] == "measured" and device["runtime"] == "tensorrt"
    assert device["precisions"] == ["fp32", "fp16", "int8"]
    assert device["host"]["gpu"] == torch.cuda.get_device_name(0)
    assert Path(out / "blocks.csv").read_text().count("\n") > 3
