"""Structured pruning: real smaller tensors, the geometry the latency predictor prices, ONNX export."""

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from autocompress.arch import all_blocks, plan, pruned_channels, unpruned
from autocompress.compress import check_supported, finalize, prepare, prune_subnet
from autocompress.exceptions import SpaceError
from autocompress.hardware.lut import BlockKey
from autocompress.runtime import export_onnx, model_size, ort_accuracy, session
from autocompress.space import Candidate, SearchSpace, load_space, space_from_dict
from autocompress.supernet import MBConv, Supernet, extract_calibrated, load_or_train

# One stage per kind of block: stride 1 with a residual (8 -> 8), stride 2 without one and a
# residual after it (kernel 5, expand 4), stride 1 without a residual (16 -> 24).
BLOCKS = {
    "name": "blocks",
    "input": {"resolution": [12]},
    "stem": {"width": [8], "stride": 1},
    "stages": [
        {"depth": [2], "width": [8], "kernel": [3], "expand": [2], "stride": 1},
        {"depth": [2], "width": [16], "kernel": [5], "expand": [4], "stride": 2},
        {"depth": [1], "width": [24], "kernel": [3], "expand": [4], "stride": 1},
    ],
    "compression": {"prune_ratio": [0.0, 0.25, 0.5]},
}


def _random_supernet(space: SearchSpace, seed: int = 0) -> Supernet:
    """An untrained supernet with distinct BatchNorm scales and statistics."""
    torch.manual_seed(seed)
    net = Supernet(space, 1, 10, [0.3], [0.35])
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.2, 1.5)
    return net.eval()


def _mbconvs(model: nn.Module) -> list[MBConv]:
    return [m for m in model.modules() if isinstance(m, MBConv)]


def _conv_macs(model: nn.Module, x: torch.Tensor) -> dict[nn.Module, int]:
    """Multiply-accumulates of every conv/linear layer, measured on a forward pass of one image."""
    macs: dict[nn.Module, int] = {}

    def hook(m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            macs[m] = out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            macs[m] = m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model(x[:1])
    for h in handles:
        h.remove()
    return macs


def _block_stats(model: nn.Module, x: torch.Tensor) -> list[tuple[int, int]]:
    """(weights, MACs) of each MBConv block's three convs."""
    macs = _conv_macs(model, x)
    out = []
    for b in _mbconvs(model):
        convs = [b.expand[0], b.dw[0], b.project[0]]
        out.append((sum(c.weight.numel() for c in convs), sum(macs[c] for c in convs)))
    return out


def _onnx_weight_shapes(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    graph = onnx.load(str(path)).graph
    inits = {i.name: tuple(i.dims) for i in graph.initializer}
    return [(n.op_type, inits[n.input[1]]) for n in graph.node if n.op_type in ("Conv", "Gemm")]


def _planned_weight_shapes(cand: Candidate, space: SearchSpace) -> list[tuple[str, tuple[int, ...]]]:
    shapes = []
    for b in plan(cand, space, 1, 10):
        if b.op == "stem":
            shapes.append(("Conv", (b.out_c, b.in_c, b.kernel, b.kernel)))
        elif b.op == "mbconv":
            shapes += [
                ("Conv", (b.hidden, b.in_c, 1, 1)),
                ("Conv", (b.hidden, 1, b.kernel, b.kernel)),
                ("Conv", (b.out_c, b.hidden, 1, 1)),
            ]
        else:
            shapes.append(("Gemm", (b.out_c, b.in_c)))
    return shapes


# --------------------------------------------------------------------------- geometry, no training


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_pruning_shrinks_every_block_type_and_keeps_the_forward_pass(ratio: float) -> None:
    space = space_from_dict(BLOCKS)
    net = _random_supernet(space)
    cand = replace(space.largest(), prune=(ratio,) * 3)
    x = torch.rand(4, 1, 12, 12)
    model = net.extract(unpruned(cand)).eval()
    residual = [b.residual for b in _mbconvs(model)]
    assert residual == [True, True, False, True, False]  # every kind of block is here
    before = _block_stats(model, x)
    total_before = sum(p.numel() for p in model.parameters())
    hidden_before = [b.expand[0].out_channels for b in _mbconvs(model)]

    pruned = prepare(model, cand, space)
    after = _block_stats(pruned, x)
    specs = [s for s in plan(cand, space, 1, 10) if s.op == "mbconv"]
    for h0, b, (w0, m0), (w1, m1), spec in zip(hidden_before, _mbconvs(pruned), before, after, specs):
        keep = b.expand[0].out_channels
        assert keep == pruned_channels(h0, ratio) and abs(keep - (1 - ratio) * h0) < 1
        # every term of an MBConv block scales with its hidden width: weights and MACs shrink alike
        assert w1 / w0 == pytest.approx(keep / h0, abs=0.01)
        assert m1 / m0 == pytest.approx(keep / h0, abs=0.01)
        assert m1 == spec.macs()  # what the latency predictor prices is what runs
        assert b.dw[0].groups == keep and b.project[0].in_channels == keep
    assert [b.residual for b in _mbconvs(pruned)] == residual
    assert sum(p.numel() for p in pruned.parameters()) < (1 - ratio / 2) * total_before
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_ratio_zero_is_the_identity_and_other_stages_are_left_alone() -> None:
    space = space_from_dict(BLOCKS)
    net = _random_supernet(space)
    base = space.largest()
    assert plan(base, space, 1, 10) == plan(unpruned(base), space, 1, 10)
    model = net.extract(base).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert prepare(model, base, space) is model
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())

    mixed = replace(base, prune=(0.0, 0.5, 0.0))
    pruned = prepare(net.extract(base).eval(), mixed, space)
    for name, tensor in pruned.state_dict().items():
        if name.startswith("stages.1.") and not name.endswith("num_batches_tracked"):
            continue
        assert torch.equal(state[name], tensor), name  # stem, stages 0 and 2, classifier untouched
    assert [b.expand[0].out_channels for b in pruned.stages[1]] == [16, 32]  # of 32 and 64


def test_exported_onnx_shapes_match_plan(tmp_path: Path) -> None:
    space = load_space("fashion_mnist")
    net = _random_supernet(space, seed=1)
    rng = random.Random(5)
    cands = [replace(space.largest(), prune=(0.25, 0.5, 0.25))]
    cands += [space.random(rng) for _ in range(4)]
    assert sum(any(r > 0 for r in c.prune) for c in cands) >= 3
    for i, cand in enumerate(cands):
        model = prepare(net.extract(unpruned(cand)).eval(), cand, space)
        path = export_onnx(model, tmp_path / f"c{i}.onnx", channels=1, resolution=cand.resolution)
        assert _onnx_weight_shapes(path) == _planned_weight_shapes(cand, space), cand.describe()


def test_round_to_keeps_hidden_channels_a_multiple_and_plan_follows(tmp_path: Path) -> None:
    space = space_from_dict({**BLOCKS, "compression": {"prune_ratio": [0.0, 0.25], "prune_round_to": 8}})
    net = _random_supernet(space)
    cand = replace(space.largest(), prune=(0.25, 0.25, 0.25))
    hidden = [b.hidden for b in plan(cand, space, 1, 10) if b.op == "mbconv"]
    assert hidden == [8, 8, 24, 48, 48]  # from 16, 16, 32, 64, 64: int(h * 0.75) rounded down to 8s
    model = prepare(net.extract(unpruned(cand)).eval(), cand, space)
    path = export_onnx(model, tmp_path / "r8.onnx", channels=1, resolution=12)
    assert _onnx_weight_shapes(path) == _planned_weight_shapes(cand, space)


def test_bn_scale_keeps_the_channels_with_the_largest_gammas() -> None:
    space = space_from_dict({**BLOCKS, "compression": {"prune_ratio": [0.5], "prune_importance": "bn_scale"}})
    net = _random_supernet(space, seed=3)
    cand = replace(space.largest(), prune=(0.5, 0.5, 0.5))
    model = net.extract(unpruned(cand)).eval()
    block = model.stages[1][1]
    gamma = (block.expand[1].weight.abs() + block.dw[1].weight.abs()) / 2
    want = torch.sort(torch.argsort(gamma, descending=True)[: len(gamma) // 2]).values
    w_expand = block.expand[0].weight.detach().clone()
    prepare(model, cand, space)
    assert torch.equal(block.expand[0].weight, w_expand[want])


def test_criteria_choose_different_channels_and_taylor_needs_data() -> None:
    kept = {}
    for crit in ("l1", "l2", "bn_scale", "taylor"):
        space = space_from_dict({**BLOCKS, "compression": {"prune_ratio": [0.5], "prune_importance": crit}})
        net = _random_supernet(space, seed=4)
        cand = replace(space.largest(), prune=(0.5, 0.5, 0.5))
        model = net.extract(unpruned(cand)).eval()
        if crit == "taylor":
            with pytest.raises(ValueError, match="taylor pruning importance needs training images"):
                prune_subnet(net.extract(unpruned(cand)).eval(), cand, space)
        gen = torch.Generator().manual_seed(0)
        x, y = torch.rand(64, 1, 12, 12, generator=gen), torch.randint(0, 10, (64,), generator=gen)
        model = prepare(model, cand, space, images=x, labels=y)
        assert all(p.grad is None for p in model.parameters())  # Taylor's gradients are cleared
        kept[crit] = model.stages[1][1].expand[0].weight.detach()
    assert not torch.equal(kept["l2"], kept["bn_scale"])
    assert not torch.equal(kept["l2"], kept["taylor"])


# --------------------------------------------------------------------------- the space


def test_all_blocks_holds_every_pruned_block_a_candidate_can_have() -> None:
    space = load_space("fashion_mnist")
    blocks = all_blocks(space, 1, 10)
    unpruned_space = space_from_dict({**space.to_dict(), "compression": {"prune_ratio": [0.0]}})
    assert len(blocks) > len(all_blocks(unpruned_space, 1, 10)) + 200  # pruned geometries are listed
    rng = random.Random(0)
    for _ in range(150):
        cand = space.random(rng)
        for b in plan(cand, space, 1, 10):
            flat = replace(b, stage=0, index=0)
            assert flat in blocks, (cand.describe(), b)
            # the latency table keys a block by its effective expand ratio: the pruned geometry
            # survives the round trip, so the profiler builds (and times) the block that runs
            assert BlockKey.of(b, "fp32").spec().hidden == b.hidden
            if b.op == "mbconv":
                assert MBConv(BlockKey.of(b, "int8").spec()).expand[0].out_channels == b.hidden


@pytest.mark.parametrize(
    ("compression", "message"),
    [
        ({"prune_ratio": [0.0, 1.0]}, r"compression: prune_ratio must be within \[0, 1\), got \[0.0, 1.0\]"),
        ({"prune_ratio": [-0.25]}, r"prune_ratio must be within \[0, 1\)"),
        ({"prune_importance": "random"}, r"compression\.prune_importance: Input should be 'l1', 'l2'"),
        ({"prune_round_to": 0}, r"compression\.prune_round_to"),
    ],
)
def test_bad_pruning_settings_are_one_line_errors(compression: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message) as info:
        space_from_dict({**BLOCKS, "compression": compression})
    assert "\n" not in str(info.value)


def test_shipped_spaces_search_pruning_and_are_supported() -> None:
    for name in ("tiny", "fashion_mnist"):
        space = load_space(name)
        assert len(space.dimensions()["s0_prune"]) >= 2
        check_supported(space)  # raised "does not prune yet" before


# --------------------------------------------------------------------------- trained tiny supernet


@pytest.fixture(scope="module")
def trained(fashion_dir):
    """The tiny space's supernet trained on a 2000-image subset (shared with test_quantize)."""
    space = load_space("tiny")
    from autocompress.data import load_dataset

    data = load_dataset("fashion-mnist", subset=2000, seed=0)
    net, _, _ = load_or_train(space, data, seed=0)
    return space, data, net


def _pruned(trained, cand: Candidate, *, recalibrate: bool = True) -> nn.Module:
    space, data, net = trained
    x_cal = data.split("calib", cand.resolution)[0] if recalibrate else None
    return prepare(extract_calibrated(net, unpruned(cand), data), cand, space, calibration=x_cal)


@pytest.mark.slow
def test_pruned_model_exports_and_onnx_runtime_matches_torch(trained, tmp_path: Path) -> None:
    space, data, _ = trained
    cand = replace(space.largest(), prune=(0.5, 0.5))
    model = _pruned(trained, cand)
    path = export_onnx(model, tmp_path / "p.onnx", channels=1, resolution=cand.resolution)
    full = export_onnx(
        _pruned(trained, unpruned(cand)), tmp_path / "u.onnx", channels=1, resolution=cand.resolution
    )
    assert model_size(path) < 0.75 * model_size(full)
    x = data.split("val", cand.resolution)[0][:64]
    with torch.no_grad():
        want = model(x).numpy()
    got = session(path).run(["logits"], {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    # half the hidden channels gone and no fine-tune yet: the network still classifies (chance
    # 10%), thanks to the BatchNorm statistics re-estimated after pruning
    acc = ort_accuracy(path, *data.split("val", cand.resolution))
    stale = export_onnx(_pruned(trained, cand, recalibrate=False), tmp_path / "s.onnx", channels=1,
                        resolution=cand.resolution)  # fmt: skip
    assert acc > 0.3 and acc > ort_accuracy(stale, *data.split("val", cand.resolution)) + 0.05


@pytest.mark.slow
def test_pruned_int8_candidate_through_finalize_runs_in_onnx_runtime(trained, tmp_path: Path) -> None:
    space, data, _ = trained
    cand = replace(space.largest(), prune=(0.5, 0.5), precision=("fp32", "int8"))
    fp32 = export_onnx(_pruned(trained, cand), tmp_path / "fp32.onnx", channels=1, resolution=cand.resolution)
    out = finalize(fp32, tmp_path / "int8.onnx", cand, space, data.split("calib", cand.resolution)[0].numpy())
    graph = onnx.load(str(out)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type == "Conv":
            assert (producer.get(node.input[1]) == "DequantizeLinear") == node.name.startswith("/stages.1/")
    x, y = data.split("val", cand.resolution)
    assert session(out).run(["logits"], {"input": x[:8].numpy()})[0].shape == (8, 10)
    acc32, acc8 = ort_accuracy(fp32, x, y), ort_accuracy(out, x, y)
    assert acc8 > acc32 - 0.03 and acc8 > 0.4, (acc32, acc8)


@pytest.mark.slow
def test_a_pruned_trial_records_the_smaller_network(trained, tmp_path: Path) -> None:
    from autocompress.hardware.targets import get_target
    from autocompress.problems.supernet import SupernetProblem
    from autocompress.supernet import supernet_key

    space, data, net = trained
    # a CPU-like target: on the Jetsons a network this small is launch-bound (every kernel at the
    # floor), so pruning it does not make it faster there, as on the real GPU
    evaluator = SupernetProblem.from_parts(space=space, data=data, supernet=net, target=get_target("raspberry-pi-4"),
                          models_dir=tmp_path, supernet_key=supernet_key(space, data, 0))  # fmt: skip
    base = replace(space.largest(), precision=("int8", "int8"), kd_alpha=0.5, finetune_steps=20)
    pruned = replace(base, prune=(0.5, 0.5))
    full, small = evaluator.evaluate(base, 0), evaluator.evaluate(pruned, 1)
    blocks = plan(pruned, space, 1, 10)
    assert (small.params, small.macs) == (sum(b.params() for b in blocks), sum(b.macs() for b in blocks))
    assert small.macs < 0.7 * full.macs and small.params < 0.7 * full.params
    assert small.latency_ms < full.latency_ms  # the predictor priced the pruned blocks (roofline)
    assert small.size_bytes < full.size_bytes
    assert small.val_accuracy > 0.4 and small.val_accuracy > full.val_accuracy - 0.2
    assert ort_accuracy(small.model_path, *data.split("test", pruned.resolution)) == small.test_accuracy
