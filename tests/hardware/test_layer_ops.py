"""The layers real CNNs use beyond conv/linear/pool: each op read from a small exported torch
module, keyed, and priced > 0 by the one pricing path on the measured CPU tables (ONNX Runtime
and OpenVINO) and an estimated Jetson table, also at a shape no row has; a DenseNet/U-Net-style
network priced on every target; ``profile --layers`` for a new op; and the profiling of missing
layers at search start (this host) or its refusal (another host)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from autocompress.hardware.layer_predict import layer_precisions, predict_layers
from autocompress.hardware.layer_table import COLUMNS_V1, LayerKey, load_layers
from autocompress.hardware.onnx_layers import extract_layers
from autocompress.hardware.targets import TABLES_DIR, get_target, list_targets
from autocompress.runtime import export_onnx
from tests.hardware import layer_nets as ln
from tests.helpers import assert_one_line_error, cli, label_as_this_machine

TARGETS = ("x86-cpu-onnxruntime", "x86-cpu-openvino", "jetson-orin-nano")
NETS = str(Path("tests") / "hardware" / "layer_nets.py")


def _layers(module: torch.nn.Module, tmp_path: Path, res: int, channels: int = 3) -> list:
    path = export_onnx(module.eval(), tmp_path / f"m{res}.onnx", channels=channels, resolution=res)
    layers, unknown = extract_layers(path)
    assert not unknown
    return layers


def _price(name: str, layers: list, precisions: list[str] | None = None):
    t = get_target(name)
    return predict_layers(
        t.device, load_layers(t.folder, t.device), layers, precisions or ["fp32"] * len(layers)
    )


@pytest.mark.parametrize("case", list(ln.OP_CASES))
def test_op_is_extracted_keyed_and_priced(case: str, tmp_path: Path) -> None:
    fn, op, detail = ln.OP_CASES[case]
    for res in (16, 20):  # 16 was measured; 20 was not: interpolated within the op's family
        layers = _layers(ln.Op(fn), tmp_path, res)
        mine = [
            i
            for i, layer in enumerate(layers)
            if layer.key.op == op and detail in (layer.key.act, layer.key.mode)
        ]
        assert mine, [layer.key.label() for layer in layers]
        for name in TARGETS:
            pred = _price(name, layers)
            assert pred.latency_ms > 0
            for i in mine:
                cost = pred.breakdown[i]
                assert cost.latency_ms > 0, (name, cost)
                if res == 20 and not get_target(name).estimated:
                    assert cost.interpolated, (name, cost)


def test_silu_gelu_and_bn_patterns_cover_their_nodes(tmp_path: Path) -> None:
    layers = _layers(ln.dense_net(), tmp_path, 28, channels=1)
    labels = [layer.key.label() for layer in layers]
    assert "conv+silu 7x7x16->16 k1 s1 g2 fp32" in labels  # Sigmoid + Mul fused into the grouped conv
    assert "bn+relu 7x7x16->16 fp32" in labels  # pre-activation BN: not folded, its ReLU fused
    assert "linear+gelu 1x1x48->32 fp32" in labels  # Div, Erf, Add, Mul, Mul
    gelu = next(layer for layer in layers if layer.key.act == "gelu")
    assert len(gelu.nodes) == 6
    assert {"concat", "resize", "transpose", "softmax", "matmul", "scale"} <= {
        layer.key.op for layer in layers
    }


def test_transpose_is_priced_and_reshape_is_free(tmp_path: Path) -> None:
    class Both(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x).reshape(1, 3, -1).transpose(1, 2)

    layers = _layers(Both(), tmp_path, 32)
    assert [layer.key.op for layer in layers] == ["act", "transpose"]
    assert _price("cpu", layers[1:]).breakdown[0].latency_ms > 0


def test_dense_unet_network_is_priced_on_every_target(tmp_path: Path) -> None:
    layers = _layers(ln.dense_net(), tmp_path, 28, channels=1)
    precisions = layer_precisions(layers, {"/d1/": "int8", "/d2/": "int8"})
    assert "int8" in precisions
    for target in list_targets():
        dev = target.device
        precs = [p if p in dev.precisions else "fp32" for p in precisions]
        pred = predict_layers(dev, load_layers(target.folder, dev), layers, precs)
        assert pred.latency_ms > dev.overhead_ms, target.name
        assert all(c.latency_ms > 0 for c in pred.breakdown)


def test_schema_1_rows_still_load(tmp_path: Path) -> None:
    src = get_target("cpu")
    folder = tmp_path / "t"
    shutil.copytree(src.folder, folder)
    rows = (folder / "layers.csv").read_text().splitlines()
    old = [",".join(COLUMNS_V1)] + [
        ",".join(r.split(",")[: len(COLUMNS_V1)]) for r in rows[1:] if r.startswith("conv")
    ]
    (folder / "layers.csv").write_text("\n".join(old) + "\n")
    table = load_layers(folder, src.device)
    assert len(table.rows) == len(old) - 1
    key = next(iter(table.rows))
    assert (key.inputs, key.pad, key.mode) == (1, -1, "")


def test_memory_bound_ops_estimate_from_bytes() -> None:
    dev = get_target("jetson-orin-nano").device
    from autocompress.hardware.layer_estimate import layer_roofline_ms

    small = LayerKey("concat", 8, 8, 32, 32, 1, 1, 1, "none", "fp32", inputs=2)
    big = LayerKey("concat", 64, 64, 256, 256, 1, 1, 1, "none", "fp32", inputs=2)
    floor = dev.roofline.kernel_overhead_ms
    assert floor <= layer_roofline_ms(dev, small) < layer_roofline_ms(dev, big)
    memory = 2 * 64 * 64 * 256 * 4 / (dev.roofline.memory_bandwidth_gbs * 1e9 * dev.roofline.memory_efficiency) * 1e3
    # a Jetson queues its kernels: a memory-bound kernel costs the larger of its traffic time and the floor
    assert dev.roofline.floor_mode == "max"
    assert layer_roofline_ms(dev, big) == pytest.approx(max(memory, floor))
    assert layer_roofline_ms(dev, small) == pytest.approx(floor)


# ----------------------------------------------------------------------------- measuring


def _tables(tmp_path: Path, name: str = "x86-cpu-onnxruntime") -> tuple[Path, Path]:
    """A copy of a shipped table in a tmp $AUTOCOMPRESS_TABLES (searched first), as profiled here."""
    root = tmp_path / "tables"
    shutil.copytree(TABLES_DIR / name, root / name)
    label_as_this_machine(root / name)
    return root, root / name


def _weights(tmp_path: Path, module: torch.nn.Module) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "w.pt"
    torch.save(module.state_dict(), path)
    return path


def test_profile_layers_writes_a_measured_row_for_a_new_op(tmp_path: Path) -> None:
    root, folder = _tables(tmp_path)
    before = (TABLES_DIR / "x86-cpu-onnxruntime" / "layers.csv").read_text()
    proc = cli("profile", "--layers", "--model", f"{NETS}:upsample_net", "--weights",
               str(_weights(tmp_path, ln.upsample_net())), "--precision", "fp32", "--reps", "5", "--passes", "1",
               "--space", str(_space(tmp_path)), env={"AUTOCOMPRESS_TABLES": str(root)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (folder / "layers.csv").read_text()
    assert any(
        r.startswith("resize,") and r.endswith(",bicubic") and ",measured," in r for r in text.splitlines()
    )
    assert (TABLES_DIR / "x86-cpu-onnxruntime" / "layers.csv").read_text() == before


def test_profile_layers_refuses_a_table_measured_on_another_machine(tmp_path: Path) -> None:
    """Rows timed here added to a table timed elsewhere would make one table of two machines."""
    root = tmp_path / "tables"
    shutil.copytree(TABLES_DIR / "x86-cpu-onnxruntime", root / "x86-cpu-onnxruntime")  # as shipped: another machine
    before = (root / "x86-cpu-onnxruntime" / "layers.csv").read_text()
    proc = cli("profile", "--layers", "--model", f"{NETS}:upsample_net", "--weights",
               str(_weights(tmp_path, ln.upsample_net())), "--precision", "fp32", "--reps", "5", "--passes", "1",
               "--space", str(_space(tmp_path)), env={"AUTOCOMPRESS_TABLES": str(root)})  # fmt: skip
    assert_one_line_error(proc, 2, "was measured on another machine", "--name x86-cpu-onnxruntime-here")
    assert (root / "x86-cpu-onnxruntime" / "layers.csv").read_text() == before


def _space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(
        yaml.safe_dump({"prune_ratio": [0.0, 0.5], "precisions": {"conv": ["fp32"], "fc": ["fp32"]}})
    )
    return path


@pytest.fixture()
def plain_problem(tmp_path: Path, monkeypatch, fashion_dir):
    root, folder = _tables(tmp_path)
    monkeypatch.setenv("AUTOCOMPRESS_TABLES", str(root))
    from autocompress.problems.user_model.problem import UserModelProblem

    problem = UserModelProblem(model=f"{NETS}:plain_net", weights=_weights(tmp_path, ln.plain_net()), target="cpu",
                               space=_space(tmp_path), subset=200)  # fmt: skip
    assert problem.target.folder == folder
    return problem, folder


def test_check_profiles_missing_layers_on_this_host(plain_problem) -> None:
    from autocompress.problems.base import ProblemHooks

    problem, folder = plain_problem
    before = load_layers(folder, problem.target.device).rows
    calls: list[tuple[int, int]] = []
    problem.check(ProblemHooks(profile_step=lambda d, t: calls.append((d, t))))
    after = load_layers(folder, problem.target.device).rows
    added = set(after) - set(before)
    assert any(k.op == "maxpool" and (k.kernel, k.stride, k.pad) == (3, 3, 0) for k in added)
    assert all(after[k].source == "measured" for k in added)
    assert calls and calls[-1][0] == calls[-1][1]
    problem.check()  # now everything is priced: nothing more to profile
    assert load_layers(folder, problem.target.device).rows.keys() == after.keys()


def test_another_hosts_table_is_refused_in_one_line(tmp_path: Path) -> None:
    root, folder = _tables(tmp_path)
    dev = yaml.safe_load((folder / "device.yaml").read_text())
    dev["host"]["cpu"] = "Some Other CPU 9000"
    (folder / "device.yaml").write_text(yaml.safe_dump(dev, sort_keys=False))
    before = (folder / "layers.csv").read_text()
    run = tmp_path / "run"
    proc = cli("search", "--model", f"{NETS}:plain_net", "--weights", str(_weights(tmp_path, ln.plain_net())),
               "--target", "cpu", "--budget", "5ms", "--subset", "200", "--space", str(_space(tmp_path)),
               "--run-dir", str(run), env={"AUTOCOMPRESS_TABLES": str(root)})  # fmt: skip
    assert_one_line_error(proc, 2, "measured on another machine", "autocompress profile --layers --model")
    assert (folder / "layers.csv").read_text() == before
    assert not run.exists()
