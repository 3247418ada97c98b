"""``autocompress latency FILE.onnx --target T``: a ResNet-18-style and a MobileNet-V2-style file
(exported by torch here, 64 px) priced on every shipped target, with the interval where the
table records a held-out error band and the phrase that says none is on record where it does
not; QDQ files priced as stored (``mixed``); the JSON and the table show the same numbers.

The shipped tables are copied to a temporary ``$AUTOCOMPRESS_TABLES`` folder and each copy's
``error_band`` set by the test (bands on most targets, none on two), so the assertions do not
depend on which bands the shipped files hold. The measured CPU tables' copies record this
machine as their host: the layers their families lack are then profiled here
(``--profile-missing``), as they would be on the machine a table was measured on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from typer.testing import CliRunner

from autocompress.cli import app
from autocompress.hardware.host import cpu_model
from autocompress.hardware.interval import NO_BAND
from autocompress.hardware.lut import load_device
from autocompress.hardware.onnx_layers import extract_layers
from autocompress.hardware.targets import TABLES_DIR, get_target

SHIPPED = sorted(load_device(p / "device.yaml").name for p in TABLES_DIR.iterdir() if (p / "device.yaml").is_file())
WITHOUT_BAND = {"raspberry-pi-4", "x86-cpu-openvino"}  # copies left with no error_band
BANDS = {
    "fp32": {"lo_pct": -12.0, "hi_pct": 18.0, "coverage": 0.8, "n": 30, "basis": "test band fp32"},
    "all": {"lo_pct": -20.0, "hi_pct": 30.0, "coverage": 0.8, "n": 40, "basis": "test band all"},
}
RES = 64


class Basic(nn.Module):
    """ResNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, identity or 1x1 projection, add, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = (None if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """ResNet-18's layout (7x7 stem, max pool, 4 stages of 2 basic blocks, global pool, linear), narrow."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))  # fmt: skip
        blocks, cin = [], width
        for i, c in enumerate([width, 2 * width, 4 * width, 8 * width]):
            blocks += [Basic(cin, c, 1 if i == 0 else 2), Basic(c, c, 1)]
            cin = c
        self.blocks, self.fc = nn.Sequential(*blocks), nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


class InvertedResidual(nn.Module):
    """MobileNet-V2 block: 1x1 expand-ReLU6, 3x3 depthwise-ReLU6, 1x1 project, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        h = cin * expand
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        blocks, cin = [], 16
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 1, 2)]:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(cin, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU6())
        self.fc = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.head(self.blocks(self.stem(x))), 1), 1))


def _export(net: nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    net.eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.onnx.export(net, torch.randn(1, 3, RES, RES), str(path), input_names=["input"], dynamo=False)
    return path


def _qdq(src: Path, dst: Path, exclude: tuple[str, ...] = ()) -> Path:
    """``src`` quantized to int8 by ONNX Runtime's static quantizer, QDQ format (but for the
    nodes of the ``exclude`` op types)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"input": rng.standard_normal((1, 3, RES, RES)).astype(np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    skip = [n.name for n in onnx.load(str(src)).graph.node if n.op_type in exclude]
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=skip)  # fmt: skip
    return dst


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("latency")
    files = {"resnet18": _export(ResNet18(), root / "resnet18.onnx"),
             "mobilenetv2": _export(MobileNetV2(), root / "mobilenetv2.onnx")}  # fmt: skip
    files["mobilenetv2-qdq"] = _qdq(files["mobilenetv2"], root / "mobilenetv2.qdq.onnx")
    files["mobilenetv2-partial"] = _qdq(files["mobilenetv2"], root / "mobilenetv2.partial.onnx",
                                        exclude=("Gemm", "GlobalAveragePool", "ReduceMean"))  # fmt: skip
    tables = root / "tables"
    for folder in TABLES_DIR.iterdir():
        if not (folder / "device.yaml").is_file():
            continue
        copy = tables / folder.name
        shutil.copytree(folder, copy)
        device = yaml.safe_load((copy / "device.yaml").read_text())
        device.pop("error_band", None)
        if device["name"] not in WITHOUT_BAND:
            device["error_band"] = BANDS
        if device["source"] == "measured":  # this machine is the copy's host: its gaps are profiled here
            device["host"] = {**device.get("host", {}), "cpu": cpu_model(), "logical_cpus": os.cpu_count()}
        (copy / "device.yaml").write_text(yaml.safe_dump(device, sort_keys=False))
    env = {"AUTOCOMPRESS_TABLES": str(tables), "AUTOCOMPRESS_CACHE": str(root / "cache"), "COLUMNS": "220"}
    return {"files": files, "tables": tables, "env": env}


def latency(lab: dict[str, Any], *args: str) -> Any:
    return CliRunner().invoke(app, ["latency", *args], env=lab["env"])


def _band(name: str, precision: str) -> dict[str, Any] | None:
    if name in WITHOUT_BAND:
        return None
    return BANDS.get(precision) or BANDS["all"]


@pytest.mark.parametrize("target", SHIPPED)
@pytest.mark.parametrize("net", ["resnet18", "mobilenetv2"])
def test_latency_of_a_file_on_every_target(lab: dict[str, Any], net: str, target: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    path = lab["files"][net]
    res = latency(lab, str(path), "--target", target, "--json", "--profile-missing")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):])
    monkeypatch.setenv("AUTOCOMPRESS_TABLES", lab["env"]["AUTOCOMPRESS_TABLES"])
    t = get_target(target)
    assert doc["schema"] == 1 and doc["target"] == target and doc["model"] == str(path)
    assert doc["source"] == t.source_label and doc["estimated"] == t.estimated
    if t.estimated:
        assert "estimated" in doc["source"] and "not measured" in doc["source"]
    else:
        assert doc["source"].startswith("measured (")
    # the breakdown: one row per fused layer of the file, all fp32 (a float file, as stored)
    layers, _ = extract_layers(path)
    assert len(doc["layers"]) == len(layers) and doc["layer_precisions"] == {"fp32": len(layers)}
    assert [row["nodes"][0] for row in doc["layers"]] == [layer.node for layer in layers]
    total = sum(row["latency_ms"] for row in doc["layers"]) + doc["overhead_ms"] + doc["transitions_ms"]
    assert doc["latency_ms"] > 0 and total == pytest.approx(doc["latency_ms"], rel=1e-9)
    for row in doc["layers"]:
        assert row["latency_ms"] > 0 and row["precision"] == "fp32"
        assert row["priced_by"] in ("table (measured)", "table (estimated)", "interpolated (family fit)",
                                    "estimated (roofline)", "estimated (roofline, in the kernel before it)")  # fmt: skip
        assert row["estimate"] == (row["priced_by"] not in ("table (measured)", "table (published)"))
    fused = [row for row in doc["layers"] if row["priced_by"].endswith("in the kernel before it)")]
    if t.estimated:  # nothing on a device we do not have is anything but an estimate
        assert all(row["estimate"] for row in doc["layers"])
        assert doc["estimate_layers"] == len(layers)
        # the roofline's convention, as the search's block tables price it: the classifier after
        # the global pool and each residual add after its conv run in the kernel before them
        assert {row["op"] for row in fused} >= {"linear", "add"}
    else:  # a measured table's rows were each timed alone, as ONNX Runtime and OpenVINO run them
        assert not fused
    if net == "mobilenetv2":
        assert any(" dw " in row["label"] for row in doc["layers"])  # depthwise convs are priced as such
    # energy: latency x the device's typical power (an estimate where the latency is)
    power = t.device.power_w
    if power is None:
        assert doc["energy_mj"] is None and any("power_w" in n for n in doc["notes"])
    else:
        assert doc["energy_mj"] == pytest.approx(doc["latency_ms"] * power)
        assert doc["energy_estimated"] == t.estimated
    # the interval: the table's held-out band around the prediction, or none and the phrase
    band = _band(target, "fp32")
    lat = doc["latency_ms"]
    if band is None:
        assert doc["interval_ms"] is None and doc["interval"] is None and doc["interval_note"] == NO_BAND
    else:
        lo, hi = doc["interval_ms"]
        assert lo == pytest.approx(lat * (1 + band["lo_pct"] / 100)) and hi == pytest.approx(lat * (1 + band["hi_pct"] / 100))
        assert lo < lat < hi and band["basis"] in doc["interval_note"]
        if power is not None:
            assert doc["energy_interval_mj"] == pytest.approx([lo * power, hi * power])
    # the table and summary line a person reads: the same numbers
    human = latency(lab, str(path), "--target", target)
    assert human.exit_code == 0, human.output
    text = human.stdout
    assert f"{path.name} on {target} (mixed: {len(layers)} fp32 layers)" in text
    assert ("ESTIMATE" in text) == t.estimated
    assert (NO_BAND in text) == (band is None)
    assert (" – " in text) == (band is not None)
    assert f"source: {t.source_label}" in " ".join(text.split())
    for row in doc["layers"][:3]:
        assert row["label"] in text


def test_qdq_file_is_priced_as_stored(lab: dict[str, Any]) -> None:
    """A QDQ file: its layers are the float network's, int8 where it quantizes; on a device with
    int8 it is faster than the float file, a device without int8 refuses it as stored."""
    float_file, qdq = lab["files"]["mobilenetv2"], lab["files"]["mobilenetv2-qdq"]

    def doc(path: Path, *extra: str) -> dict[str, Any]:
        res = latency(lab, str(path), "--target", "raspberry-pi-4", "--json", *extra)
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout[res.stdout.index("{"):])

    fp32, mixed = doc(float_file), doc(qdq)
    # the same layers and shapes (ONNX Runtime's quantizer folds ReLU6 into the quantization range,
    # so the file's int8 convs carry no activation)
    def geometry(d: dict[str, Any]) -> list[tuple[str, str]]:
        return [(r["op"], " ".join(r["label"].split(" ")[1:-1])) for r in d["layers"]]

    assert geometry(mixed) == geometry(fp32)
    assert mixed["layer_precisions"].get("int8", 0) >= len(mixed["layers"]) // 2
    convs = [r for r in mixed["layers"] if r["op"] == "conv"]
    assert convs and all(r["precision"] == "int8" for r in convs)
    assert mixed["latency_ms"] < fp32["latency_ms"]
    # the same file priced all-fp32 is its float network
    assert doc(qdq, "--precision", "fp32")["latency_ms"] == pytest.approx(fp32["latency_ms"])
    # raspberry-pi-4 has no band: neither has the mixed prediction
    assert mixed["interval_ms"] is None
    refused = latency(lab, str(qdq), "--target", "jetson-nano")
    assert refused.exit_code == 2
    assert "int8, which target jetson-nano does not run" in " ".join(refused.output.split())


def test_mixed_precision_interval_is_the_widest_band(lab: dict[str, Any]) -> None:
    """int8 and fp32 layers together (the head left float): the interval spans the fp32 band and
    the all-precision one."""
    res = latency(lab, str(lab["files"]["mobilenetv2-partial"]), "--target", "raspberry-pi-5", "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout[res.stdout.index("{"):])
    assert set(d["layer_precisions"]) == {"fp32", "int8"}
    assert [r["precision"] for r in d["layers"] if r["op"] == "linear"] == ["fp32"]
    lo, hi = d["interval_ms"]
    lat = d["latency_ms"]
    assert lo == pytest.approx(lat * 0.80) and hi == pytest.approx(lat * 1.30)  # min(-12, -20), max(18, 30)


def test_measured_table_missing_a_layer_family_is_refused_without_profile_missing(tmp_path: Path) -> None:
    """Without --profile-missing nothing is measured or written: one line says how."""
    net = _export(ResNet18(), tmp_path / "r.onnx")
    tables = tmp_path / "tables"
    shutil.copytree(TABLES_DIR / "x86-cpu-openvino", tables / "x86-cpu-openvino")
    before = (tables / "x86-cpu-openvino" / "layers.csv").read_text()
    res = CliRunner().invoke(app, ["latency", str(net), "--target", "x86-cpu-openvino"],
                             env={"AUTOCOMPRESS_TABLES": str(tables), "COLUMNS": "400"})  # fmt: skip
    assert res.exit_code == 2
    assert "has no layer-table rows like" in res.output and "--profile-missing" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert (tables / "x86-cpu-openvino" / "layers.csv").read_text() == before
    # the table is another machine's: the line's way to price the file here works as it says
    import re
    import shlex

    line = " ".join(res.output.split())
    profile, again = re.findall(r"'autocompress (profile [^']+)'", line)[0], re.findall(r"'autocompress (latency [^']+)'", line)[-1]
    env = {"AUTOCOMPRESS_TABLES": str(tables), "COLUMNS": "400"}
    made = CliRunner().invoke(app, [*shlex.split(profile), "--reps", "5", "--passes", "1", "--precision", "fp32"], env=env)
    assert made.exit_code == 0, made.output
    priced = CliRunner().invoke(app, shlex.split(again), env=env)
    assert priced.exit_code == 0, priced.output
    assert "x86-cpu-openvino-here" in priced.output and "profiled on this machine and added" in priced.output


def test_half_precision_file_is_priced_in_fp16(lab: dict[str, Any], tmp_path: Path) -> None:
    """A file computed in float16 is priced with fp16 rows as stored: the same as the float file
    with --precision fp16; a device without fp16 refuses it as stored."""
    half = tmp_path / "half.onnx"
    torch.onnx.export(MobileNetV2().eval().half(), torch.zeros(1, 3, RES, RES, dtype=torch.half), str(half),
                      input_names=["input"], dynamo=False)  # fmt: skip

    def doc(path: Path, *extra: str) -> dict[str, Any]:
        res = latency(lab, str(path), "--target", "jetson-orin-nano", "--json", *extra)
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout[res.stdout.index("{"):])

    stored = doc(half)
    n = len(stored["layers"])
    assert stored["layer_precisions"] == {"fp16": n} and n == len(extract_layers(lab["files"]["mobilenetv2"])[0])
    assert stored["latency_ms"] == pytest.approx(doc(lab["files"]["mobilenetv2"], "--precision", "fp16")["latency_ms"])
    lo, hi = stored["interval_ms"]  # no fp16 band in the copy: the all-precision one
    assert lo == pytest.approx(stored["latency_ms"] * 0.8) and hi == pytest.approx(stored["latency_ms"] * 1.3)
    refused = latency(lab, str(half), "--target", "raspberry-pi-5")
    assert refused.exit_code == 2 and "fp16, which target raspberry-pi-5 does not run" in " ".join(refused.output.split())


@pytest.mark.parametrize("net", ["resnet18", "mobilenetv2"])
def test_estimate_for_an_uncalibrated_family_says_so(lab: dict[str, Any], net: str) -> None:
    """Orin NX is calibrated on detectors and one ResNet-50 (MLPerf): a depthwise classifier's
    estimate there says its family has no figure, a ResNet's does not; AGX Orin holds figures of
    both classifier families, so no such line."""
    path = str(lab["files"][net])
    nx = json.loads(latency(lab, path, "--target", "jetson-orin-nx", "--json").stdout)
    note = [n for n in nx["notes"] if "holds no figure of this family" in n]
    if net == "resnet18":
        assert note == []
        return
    assert len(note) == 1 and "ESTIMATE" in note[0] and "depthwise" in note[0]
    agx = json.loads(latency(lab, path, "--target", "jetson-agx-orin", "--json").stdout)
    assert not any("holds no figure" in n for n in agx["notes"])
    human = latency(lab, path, "--target", "jetson-orin-nx")
    assert "holds no figure of this family" in " ".join(human.stdout.split())
