"""``autocompress latency`` on small files exported in the ways users export them: opset 18
(``ReduceMean`` axes given as an input), dynamic input sizes, a batch other than 1, and a table
measured on another machine that lacks a layer family."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

from autocompress.cli import app
from autocompress.hardware.onnx_layers import extract_layers

TARGET = "raspberry-pi-5"  # an estimated table: priced the same on any machine


class Tiny(nn.Module):
    """conv-ReLU, a mean over H and W (``ReduceMean``), linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _export(path: Path, batch: int = 1, opset: int = 18, dynamic: dict[int, str] | None = None) -> Path:
    torch.manual_seed(0)
    torch.onnx.export(Tiny().eval(), torch.zeros(batch, 1, 28, 28), str(path), input_names=["input"],
                      opset_version=opset, dynamic_axes={"input": dynamic} if dynamic else None, dynamo=False)  # fmt: skip
    return path


def latency(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["latency", *args], env={"COLUMNS": "400", **(env or {})})


def _json(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


@pytest.mark.parametrize("opset", [17, 18])
def test_reduce_mean_is_a_global_pool_at_every_opset(tmp_path: Path, opset: int) -> None:
    """Opset 18 moved ReduceMean's axes from an attribute to an input: both price the same."""
    path = _export(tmp_path / "tiny.onnx", opset=opset)
    reduce = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "ReduceMean")
    assert (len(reduce.input) > 1) == (opset >= 18)  # the file really holds the form under test
    layers, unknown = extract_layers(path)
    assert unknown == []
    assert [(s.key.op, s.key.in_h, s.key.in_w, s.key.in_c) for s in layers][1] == ("globalpool", 28, 28, 8)
    doc = _json(latency(str(path), "--target", TARGET, "--json"))
    assert [line["op"] for line in doc["layers"]] == ["conv", "globalpool", "linear"]


def test_reduce_mean_over_channels_is_not_a_global_pool(tmp_path: Path) -> None:
    """Axes read from the input are used, not assumed: a mean over C is no global pool."""
    path = _export(tmp_path / "tiny.onnx", opset=18)
    model = onnx.load(str(path))
    reduce = next(n for n in model.graph.node if n.op_type == "ReduceMean")
    const = next(n for n in model.graph.node if n.output[0] == reduce.input[1])
    const.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(torch.tensor([1]).numpy(), const.output[0]))
    onnx.save(model, str(path))
    _, unknown = extract_layers(path)
    assert [u.split()[0] for u in unknown] == ["ReduceMean"]
