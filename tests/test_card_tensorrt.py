"""The exported model's card says how to measure the file on an NVIDIA device: a ``trtexec``
command naming the exported file, its input name and shape, and its precision flags."""

from __future__ import annotations

import json

import onnx
import pandas as pd
import pytest

from autocompress.runtime_tensorrt import nonzero_zero_points
from tests.helpers import cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_card_gives_the_trtexec_command_for_the_exported_file(small_run, tmp_path) -> None:
    trials = pd.read_parquet(small_run / "trials.parquet").set_index("number")
    done = trials[trials["state"] == "COMPLETE"]
    # an int8 trial when the run has one: its flag and its note are what a Jetson owner needs
    int8 = [n for n, r in done.iterrows() if "int8" in str(r.get("candidate"))]
    number = int8[0] if int8 else int(done.index[0])
    out = tmp_path / "exported"
    proc = cli("export", str(small_run), "--trial", str(number), "--format", "onnx", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((out / "model_card.json").read_text())
    model = out / next(iter(card["files"]))
    graph = onnx.load(str(model)).graph
    name = graph.input[0].name
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
    cmd = card["tensorrt"]["trtexec"]
    assert cmd.startswith(f"trtexec --onnx={model.name} ")
    assert f"--shapes={name}:1x{'x'.join(map(str, dims))} " in cmd
    has_qdq = any(n.op_type == "DequantizeLinear" for n in graph.node)
    assert ("--int8" in cmd) == has_qdq
    md = (out / "model_card.md").read_text()
    # the run's target is the CPU table: TensorRT is offered as another device, not as the target
    assert "## On an NVIDIA device (TensorRT)" in md and cmd in md
    # the run's target is the x86 CPU table: its int8 files are asymmetric, and the card says
    # TensorRT would reject them
    if has_qdq:
        assert nonzero_zero_points(model) > 0
        assert "TensorRT's ONNX parser rejects" in card["tensorrt"]["note"] and card["tensorrt"]["note"] in md
    else:
        assert card["tensorrt"]["note"] is None
