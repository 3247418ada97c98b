"""Estimated Jetson models across network families: family classification, the note an
uncovered family gets, fused kernels paying one launch floor, per-source harness terms kept out
of the kernel floor, and the held-out (leave-one-family-out / leave-one-source-out) errors and
error bands every calibrated Jetson ships with."""

from __future__ import annotations

import pytest

from autocompress.arch import BlockSpec, plan
from autocompress.hardware.calibrate import (
    WITHIN_PCT,
    _Params,
    _prepare,
    calibrate_device,
    leave_one_family_out,
)
from autocompress.hardware.families import covered_families, family_of, held_out_line, uncovered_note
from autocompress.hardware.lut import CalibrationFigure, DeviceSpec
from autocompress.hardware.reference_nets import conv_layer, reference_net
from autocompress.hardware.roofline import block_latency_ms, block_layers, layers_latency_ms
from autocompress.hardware.targets import get_target
from autocompress.space import load_space

# leave-one-family-out share within +-25% each Jetson reached when its figures were last fitted
# (benchmarks/README.md); a change of the model that loses ground fails here
# (issue 17's goal: 80%; the Orins reach it with the GEMM tile fill, roofline.tile_fill)
LOFO_WITHIN_25 = {"jetson-agx-orin": 0.8, "jetson-orin-nano": 0.8, "jetson-nano": 0.9, "jetson-xavier-nx": 0.95}


@pytest.mark.parametrize(("network", "size", "family"), [
    ("resnet18", 224, "dense-cnn"), ("resnet50", 224, "dense-cnn"), ("squeezenet1_1", 224, "dense-cnn"),
    ("mobilenet_v2", 224, "depthwise"), ("mobilenet_v3_large", 224, "depthwise"),
    ("mobilenet_v3_small", 224, "depthwise"), ("efficientnet_b0", 224, "depthwise"),
    ("yolov8n", 640, "detector"), ("yolo11s", 640, "detector"), ("yolox_s", 640, "detector"),
])  # fmt: skip
def test_family_of_reference_networks(network: str, size: int, family: str) -> None:
    assert family_of(reference_net(network, size).layers) == family


def test_default_space_networks_are_depthwise_heavy() -> None:
    space = load_space("fashion_mnist")
    for cand in (space.smallest(), space.largest()):
        layers = [layer for block in plan(cand, space, 1, 10) for layer in block_layers(block)]
        assert family_of(layers) == "depthwise"


def test_uncovered_family_is_said_and_covered_one_is_not() -> None:
    mnv3 = reference_net("mobilenet_v3_large", 224).layers
    nx, agx = get_target("jetson-orin-nx").device, get_target("jetson-agx-orin").device
    assert set(covered_families(nx)) == {"dense-cnn", "detector"}  # MLPerf ResNet-50 + Ultralytics YOLO11
    note = uncovered_note(nx, mnv3)
    assert note is not None and "ESTIMATE" in note and "depthwise" in note and "no figure" in note
    assert uncovered_note(nx, reference_net("yolo11n", 640).layers) is None
    assert uncovered_note(nx, reference_net("resnet18", 224).layers) is None
    assert set(covered_families(agx)) == {"dense-cnn", "depthwise", "detector"}
    assert uncovered_note(agx, mnv3) is None
    assert uncovered_note(get_target("cpu").device, mnv3) is None  # measured: not an estimate


def _device(kernel_ms: float = 0.5, mode: str = "add", peak: float = 1e6, bandwidth: float = 1e6) -> DeviceSpec:
    return DeviceSpec.model_validate({
        "name": "floor", "description": "launch-floor check", "source": "estimated", "runtime": "tensorrt",
        "precisions": ["fp16"], "overhead_ms": 0.0,
        "roofline": {"peak_gops": {"fp16": peak}, "precision_efficiency": {"fp16": 1.0}, "layer_efficiency": {},
                     "memory_bandwidth_gbs": bandwidth, "kernel_overhead_ms": kernel_ms, "floor_mode": mode},
    })  # fmt: skip


@pytest.mark.parametrize("mode", ["add", "max"])
def test_fused_kernels_pay_one_launch_floor(mode: str) -> None:
    """A head (pool + linear) and a squeeze-excite (pool, two linears, scale) are one kernel each:
    on a device whose work is free, they cost one floor, not one per op."""
    device = _device(mode=mode)
    head = BlockSpec("head", 7, 7, 96, 10, 1, 1, 1.0, "none", 3)
    assert block_latency_ms(device, head, "fp16") == pytest.approx(0.5, rel=1e-3)
    mbconv = BlockSpec("mbconv", 14, 14, 16, 16, 3, 1, 4.0, "relu", 1)
    assert block_latency_ms(device, mbconv, "fp16") == pytest.approx(3 * 0.5, rel=1e-3)
    net = reference_net("mobilenet_v3_large", 224)
    se = [layer for layer in net.layers if layer.name.startswith("se.")]
    assert len(se) == 8 * 4 and sum(layer.launches for layer in se) == 8  # 8 SE blocks, one kernel each
    assert net.layers[-3].name == "avgpool" and [la.launches for la in net.layers[-3:]] == [1, 0, 1]


@pytest.mark.parametrize("mode", ["add", "max"])
def test_cuda_graph_figure_pays_the_work_but_no_launch_floor(mode: str) -> None:
    """MLPerf's harness replays a CUDA graph: its figure carries no per-kernel launch floor."""
    params = _Params.of(_device(kernel_ms=0.5, mode=mode, peak=1e3, bandwidth=10.0))
    fig = CalibrationFigure(network="resnet18", input_size=224, precision="fp16", latency_ms=1.0,
                            published="x", source="s", includes_overhead=False)  # fmt: skip
    plain = _prepare([fig])[0]
    graph = _prepare([fig.model_copy(update={"cuda_graph": True})])[0]
    floor_free = params.predict(graph)
    assert 0 < floor_free < params.predict(plain)
    params.kernel_ms = 0.0
    assert floor_free == pytest.approx(params.predict(plain))


def test_floor_max_mode_charges_the_larger_of_work_and_floor() -> None:
    conv = [conv_layer(224, 224, 3, 64, 3, 2, name="stem")[0]]  # one kernel
    work = layers_latency_ms(_device(0.0, "add", 1e3, 10.0), conv, "fp16")  # about 0.04 ms of compute
    assert layers_latency_ms(_device(0.01, "max", 1e3, 10.0), conv, "fp16") == pytest.approx(work)
    assert layers_latency_ms(_device(0.01, "add", 1e3, 10.0), conv, "fp16") == pytest.approx(work + 0.01)
    assert layers_latency_ms(_device(10.0, "max", 1e3, 10.0), conv, "fp16") == pytest.approx(10.0)
    # the stem block is two kernels (the input's normalisation, then the conv): two floors
    stem = BlockSpec("stem", 224, 224, 3, 64, 3, 2, 1.0, "relu", -1)
    assert block_latency_ms(_device(10.0, "max", 1e3, 10.0), stem, "fp16") == pytest.approx(20.0)


def test_harness_overhead_is_fitted_apart_from_the_kernel_floor() -> None:
    """Figures from two harnesses, one adding 2 ms per inference (a Python loop): the fit gives
    that harness its own term and recovers the true kernel floor instead of inflating it."""
    base = DeviceSpec.model_validate({
        "name": "harness", "description": "harness separation check", "source": "estimated",
        "runtime": "tensorrt", "precisions": ["fp16"], "overhead_ms": 0.1,
        "roofline": {"peak_gops": {"fp16": 8000.0}, "precision_efficiency": {"fp16": 0.5},
                     "layer_efficiency": {"conv": 1.0, "dwconv": 0.25}, "memory_bandwidth_gbs": 60.0,
                     "kernel_overhead_ms": 0.5, "floor_mode": "max",
                     "fit": {"figures": 0, "free": ["precision_efficiency.fp16", "kernel_overhead_ms",
                                                     "harness_overhead_ms.python"]}},
    })  # fmt: skip
    truth = _Params.of(base)
    truth.prec_eff["fp16"], truth.kernel_ms, truth.harness = 0.3, 0.02, {"python": 2.0}
    figures = []
    for net, size in [("resnet18", 224), ("resnet50", 224), ("mobilenet_v3_small", 224), ("mobilenet_v2", 224),
                      ("yolov8n", 640), ("squeezenet1_1", 224)]:  # fmt: skip
        for harness in ("", "python"):
            stub = CalibrationFigure(network=net, input_size=size, precision="fp16", latency_ms=1.0, published="x",
                                     source=f"synthetic-{harness or 'kernels'}", harness=harness,
                                     includes_overhead=bool(harness))  # fmt: skip
            ms = truth.predict(_prepare([stub])[0])
            figures.append(stub.model_copy(update={"latency_ms": ms}))
    device = base.model_copy(update={"roofline": base.roofline.model_copy(update={"calibration": figures})})  # type: ignore[union-attr]
    fitted = calibrate_device(device).roofline
    assert fitted is not None
    assert fitted.kernel_overhead_ms == pytest.approx(0.02, rel=0.02)
    assert fitted.harness_overhead_ms["python"] == pytest.approx(2.0, rel=0.02)


CALIBRATED_JETSONS = sorted(LOFO_WITHIN_25)


@pytest.mark.parametrize("name", CALIBRATED_JETSONS)
def test_jetsons_are_calibrated_on_three_families_and_meet_their_held_out_share(name: str) -> None:
    device = get_target(name).device
    roof = device.roofline
    assert roof is not None and roof.fit is not None
    assert set(covered_families(device)) == {"dense-cnn", "depthwise", "detector"}
    errs = [f.lofo_error_pct for f in roof.calibration if f.use_in_fit]
    assert all(e is not None for e in errs)
    within = sum(abs(e) <= WITHIN_PCT for e in errs) / len(errs)  # type: ignore[arg-type]
    assert within >= LOFO_WITHIN_25[name]
    band = device.error_band["all"]
    assert band.n == len(errs) and band.within[str(WITHIN_PCT)] == pytest.approx(within, abs=1e-3)
    # every band reaches below zero: some held-out family is predicted too slow (benchmarks/README)
    assert band.lo_pct < band.hi_pct and band.lo_pct < 0 and "leave-one-family-out" in band.basis
    assert "LOFO" in held_out_line(device) and "no figure of" not in held_out_line(device)


def test_single_family_target_says_its_band_is_within_family() -> None:
    device = get_target("raspberry-pi-5").device
    band = device.error_band["all"]
    assert "only calibrated family (detector)" in band.basis
    assert "LOFO n/a" in held_out_line(device) and "no figure of: dense-cnn, depthwise" in held_out_line(device)


def test_orin_nx_has_two_families_and_says_the_missing_one() -> None:
    device = get_target("jetson-orin-nx").device
    assert "leave-one-family-out" in device.error_band["all"].basis
    assert "LOFO" in held_out_line(device) and "no figure of: depthwise" in held_out_line(device)


@pytest.mark.slow
def test_stored_leave_one_family_out_errors_match_recomputation() -> None:
    device = get_target("jetson-xavier-nx").device
    stored = [f.lofo_error_pct for f in device.roofline.calibration]  # type: ignore[union-attr]
    for got, want in zip(leave_one_family_out(device), stored, strict=True):
        assert got == pytest.approx(want, abs=0.3)


def test_targets_command_shows_held_out_errors() -> None:
    from tests.helpers import cli

    proc = cli("targets")
    assert proc.returncode == 0, proc.stderr
    assert "LOFO" in proc.stdout and "held-out error" in proc.stdout


def test_space_command_says_when_the_spaces_family_is_not_calibrated() -> None:
    import json

    from tests.helpers import cli

    nx = cli("space", "fashion_mnist", "--target", "orin-nx", "--json")
    assert nx.returncode == 0, nx.stderr
    note = json.loads(nx.stdout)["uncovered_family"]
    assert "depthwise" in note and "jetson-orin-nx" in note
    nano = cli("space", "fashion_mnist", "--target", "jetson-orin-nano", "--json")
    assert json.loads(nano.stdout)["uncovered_family"] is None
