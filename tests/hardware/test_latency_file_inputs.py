"""``autocompress latency`` on small files exported in the ways users export them: opset 18
(``ReduceMean`` axes given as an input), dynamic input sizes, a batch other than 1, and a table
measured on another machine that lacks a layer family."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn as nn
import yaml
from typer.testing import CliRunner

from autocompress.cli import app
from autocompress.hardware.onnx_layers import extract_layers
from autocompress.hardware.targets import TABLES_DIR
from tests.helpers import assert_one_line_error, cli

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


class Strided(nn.Module):
    """A stride-2 conv, a max pool and an unpadded conv: at a guessed 1 x 1 input the graph does not run."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize(("dynamic", "said"), [({0: "N", 2: "H", 3: "W"}, "dynamic height/width (H, W)"),
                                               ({1: "C"}, "dynamic channels (C)")])  # fmt: skip
def test_dynamic_input_size_is_refused_in_one_line(tmp_path: Path, dynamic: dict[int, str], said: str) -> None:
    """A file whose input size is dynamic is not priced at a guessed 1 x 1: one line says why
    (exit 2), and nothing of onnxruntime's own log reaches stderr."""
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(Strided().eval(), torch.zeros(1, 3, 32, 32), str(path), input_names=["input"],
                      dynamic_axes={"input": dynamic}, dynamo=False)  # fmt: skip
    proc = cli("latency", str(path), "--target", TARGET)
    assert_one_line_error(proc, 2, f"{path}: input 'input' has dynamic", said, "export it with a fixed input size")
    assert "onnxruntime" not in proc.stderr and proc.stdout == ""


def test_unknown_sizes_leave_layers_unpriced_not_guessed(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Where the sizes stay unknown (the graph cannot run at any size it could guess), the layers
    are reported unpriced instead of priced at 1 x 1 pixels, and onnxruntime logs nothing."""
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(Strided().eval(), torch.zeros(1, 3, 32, 32), str(path), input_names=["input"],
                      dynamic_axes={"input": {2: "H", 3: "W"}}, dynamo=False)  # fmt: skip
    capfd.readouterr()
    layers, unknown = extract_layers(path)
    assert layers == [] and [u.split()[0] for u in unknown] == ["Conv", "Relu", "MaxPool", "Conv"]
    assert "onnxruntime" not in capfd.readouterr().err


def test_dynamic_batch_is_priced_at_batch_1(tmp_path: Path) -> None:
    fixed = _json(latency(str(_export(tmp_path / "fixed.onnx")), "--target", TARGET, "--json"))
    dyn = _json(latency(str(_export(tmp_path / "dyn.onnx", dynamic={0: "N"})), "--target", TARGET, "--json"))
    assert dyn["latency_ms"] == fixed["latency_ms"] and dyn["layers"][0]["label"].startswith("conv+relu 28x28x1")


def test_static_batch_is_said_to_be_priced_at_batch_1(tmp_path: Path) -> None:
    """A file exported at batch 8 is priced per image (batch 1, as the tables are), and both the
    table output and the JSON say so; a batch-1 file carries no such note."""
    one = _json(latency(str(_export(tmp_path / "b1.onnx")), "--target", TARGET, "--json"))
    eight = _json(latency(str(_export(tmp_path / "b8.onnx", batch=8)), "--target", TARGET, "--json"))
    assert (one["batch"], one["file_batch"], eight["batch"], eight["file_batch"]) == (1, 1, 1, 8)
    assert eight["latency_ms"] == one["latency_ms"]
    assert not any("batch" in n for n in one["notes"])
    assert any("for batch 1" in n and "fixes batch 8" in n for n in eight["notes"])
    res = latency(str(tmp_path / "b8.onnx"), "--target", TARGET)
    assert res.exit_code == 0, res.output
    assert "note: the figures are for batch 1" in res.output and "fixes batch 8" in res.output


def test_profile_missing_on_another_machines_table_suggests_a_command_that_profiles(tmp_path: Path) -> None:
    """--profile-missing on a table measured elsewhere is refused with the command to run on that
    machine, and that command is one that profiles (it carries --profile-missing)."""
    from tests.hardware.test_latency_cli import ResNet18
    from tests.hardware.test_latency_cli import _export as export_net

    net = export_net(ResNet18(), tmp_path / "r.onnx")
    tables = tmp_path / "tables"
    shutil.copytree(TABLES_DIR / "x86-cpu-openvino", tables / "x86-cpu-openvino")
    device_yaml = tables / "x86-cpu-openvino" / "device.yaml"
    device = yaml.safe_load(device_yaml.read_text())
    device["host"] = {**(device.get("host") or {}), "cpu": "Some Other CPU 9000", "logical_cpus": 999}
    device_yaml.write_text(yaml.safe_dump(device, sort_keys=False))
    before = (tables / "x86-cpu-openvino" / "layers.csv").read_text()
    res = latency(str(net), "--target", "x86-cpu-openvino", "--profile-missing", env={"AUTOCOMPRESS_TABLES": str(tables)})
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert "measured on another machine" in res.output
    command = res.output.split("profile them there with: ", 1)[1]
    assert command.startswith(f"autocompress latency {net} --target x86-cpu-openvino --profile-missing"), command
    assert (tables / "x86-cpu-openvino" / "layers.csv").read_text() == before
