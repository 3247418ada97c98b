"""Per-stage precision: int8 where the candidate says int8, float everywhere else."""

from dataclasses import replace
from pathlib import Path

import onnx
import pytest
import torch

from autocompress.compress import finalize, for_export
from autocompress.data import load_dataset
from autocompress.runtime import export_onnx, ort_accuracy
from autocompress.space import load_space
from autocompress.supernet import extract_calibrated, load_or_train


@pytest.fixture(scope="module")
def setup(fashion_dir, tmp_path_factory):
    space = load_space("tiny")
    data = load_dataset("fashion-mnist", subset=2000, seed=0)
    net, _, _ = load_or_train(space, data, seed=0)
    cand = space.largest()
    folder = tmp_path_factory.mktemp("q")
    fp32 = export_onnx(extract_calibrated(net, cand, data), folder / "fp32.onnx", channels=1,
                       resolution=cand.resolution)  # fmt: skip
    return space, data, cand, fp32, folder


def _quantized_convs(path: Path) -> dict[str, bool]:
    """Conv/Gemm node name -> whether its weight comes through DequantizeLinear (QDQ int8)."""
    graph = onnx.load(str(path)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return {n.name: producer.get(n.input[1]) == "DequantizeLinear" for n in graph.node if n.op_type in ("Conv", "Gemm")}


def _tensor_bytes(path: Path) -> int:
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(i).nbytes for i in onnx.load(str(path)).graph.initializer)


def test_int8_body_fp32_first_and_last(setup) -> None:
    space, data, cand, fp32, folder = setup
    mixed = replace(cand, precision=("fp32", "int8"))  # stage 1 int8; stem/head fp32 by policy
    out = finalize(fp32, folder / "mixed.onnx", mixed, space, data.split("calib", cand.resolution)[0].numpy())
    convs = _quantized_convs(out)
    assert convs, "no conv found"
    for name, quantized in convs.items():
        assert quantized == name.startswith("/stages.1/"), name
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_all_fp32_has_no_qdq(setup) -> None:
    space, data, cand, fp32, folder = setup
    out = finalize(fp32, folder / "same.onnx", cand, space, data.split("calib", cand.resolution)[0].numpy())
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
    assert out.read_bytes() == fp32.read_bytes()


def test_int8_everywhere_is_smaller_and_keeps_accuracy(setup) -> None:
    space, data, cand, fp32, folder = setup
    space_all = load_space("tiny")
    space_all.model.compression.__dict__["first_last"] = "follow"  # quantize stem and head too
    all8 = replace(cand, precision=("int8", "int8"))
    out = finalize(fp32, folder / "all8.onnx", all8, space_all, data.split("calib", cand.resolution)[0].numpy())
    assert all(_quantized_convs(out).values())
    # weights shrink ~4x; on a model this tiny (3k weights) the QDQ graph's own bytes outweigh
    # that, so compare the stored tensors rather than the file
    assert _tensor_bytes(out) < 0.6 * _tensor_bytes(fp32)
    x, y = data.split("test", cand.resolution)
    acc32, acc8 = ort_accuracy(fp32, x, y), ort_accuracy(out, x, y)
    assert acc8 > acc32 - 0.03, (acc32, acc8)


def _fp16_convs(path: Path) -> dict[str, bool]:
    """Conv/Gemm node name -> whether its weight is stored in fp16."""
    graph = onnx.load(str(path)).graph
    dtype = {i.name: i.data_type for i in graph.initializer}
    return {n.name: dtype.get(n.input[1]) == onnx.TensorProto.FLOAT16 for n in graph.node if n.op_type in ("Conv", "Gemm")}


def _deploy(setup, precision: tuple[str, ...], name: str) -> tuple[Path, torch.nn.Module]:
    """The largest tiny candidate at ``precision`` per stage, exported and finalized as a trial is."""
    space, data, cand, _, folder = setup
    net, _, _ = load_or_train(space, data, seed=0)
    model = extract_calibrated(net, cand, data)
    mixed = replace(cand, precision=precision)
    src = export_onnx(for_export(model, mixed, space), folder / f"{name}.src.onnx", channels=1,
                      resolution=cand.resolution)  # fmt: skip
    return finalize(src, folder / f"{name}.onnx", mixed, space, data.split("calib", cand.resolution)[0].numpy()), model


def test_fp16_stage_is_stored_and_run_in_half_precision(setup) -> None:
    _, data, cand, fp32, _ = setup
    out, model = _deploy(setup, ("fp32", "fp16"), "half")
    convs = _fp16_convs(out)
    for name, is_half in convs.items():
        assert is_half == name.startswith("/stages.1/"), name
    assert "Cast" in {n.op_type for n in onnx.load(str(out)).graph.node}
    assert _tensor_bytes(out) < _tensor_bytes(fp32)
    x, y = data.split("test", cand.resolution)
    assert abs(ort_accuracy(out, x, y) - ort_accuracy(fp32, x, y)) < 0.005
    assert next(model.parameters()).dtype.is_floating_point and next(model.parameters()).dtype != torch.float16


def test_fp16_and_int8_stages_in_one_model(setup) -> None:
    _, data, cand, fp32, _ = setup
    out, _ = _deploy(setup, ("int8", "fp16"), "mix")
    q, h = _quantized_convs(out), _fp16_convs(out)
    for name in q:
        assert q[name] == name.startswith("/stages.0/"), name
        assert h[name] == name.startswith("/stages.1/"), name
    x, y = data.split("test", cand.resolution)
    assert ort_accuracy(out, x, y) > ort_accuracy(fp32, x, y) - 0.03
