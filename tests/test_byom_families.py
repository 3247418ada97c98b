"""Bring your own model, the concatenating families: a DenseNet (pre-activation BN, concatenated
features, grouped 1x1 convs, squeeze-excite), a pre-activation ResNet, a U-Net (upsampling, skip
concatenations) and a YOLO-style neck (C2f split/concat, SPPF, upsample + concat FPN), each with a
classification head. Their pruning (exact, or the group fixed), the per-run layer scale fitted
on the original, fp16 parts, and a search of each through the CLI with its Pareto files exported."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import onnx
import pandas as pd
import pytest
import torch
import yaml

from autocompress.data import load_dataset
from autocompress.hardware.targets import get_target
from autocompress.problems.user_model.loader import load_user_model
from autocompress.problems.user_model.problem import UserModelProblem
from autocompress.problems.user_model.run_scale import FILE as SCALE_FILE
from autocompress.problems.user_model.space import (
    ModelCandidate,
    ModelSpaceSpec,
    derive_space,
    find_groups,
    inexact_groups,
    prune_model,
)
from autocompress.runtime import ort_accuracy
from tests import byom_models as bm
from tests.helpers import cli, label_as_this_machine

MODELS = str(Path("tests") / "byom_models.py")
X = torch.zeros(2, 1, 28, 28)
FAMILIES = bm.CONCAT_FAMILIES
SUBSET = 300
# two OpenMP threads on a 2-core machine shared with other work wait for each other: a DenseNet
# training step measured 1.5 s instead of 0.026 s with one thread
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    """A copy of the CPU table in ``$AUTOCOMPRESS_TABLES``: the layers a family adds (grouped 1x1
    convs, ...) are profiled at search start into the copy, never into the shipped table."""
    root = tmp_path_factory.mktemp("tables")
    folder = root / get_target("cpu").folder.name
    shutil.copytree(get_target("cpu").folder, folder)
    label_as_this_machine(folder)  # these tests are about the families, not another machine's table
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOCOMPRESS_TABLES", str(root))
        yield root


@pytest.fixture(scope="module")
def data(fashion_dir):
    return load_dataset("fashion-mnist", subset=SUBSET, seed=0)


class _Weights(dict):
    """A model's weights trained briefly on first use and saved as a state dict (as a user would)."""

    def __init__(self, folder: Path, data) -> None:
        super().__init__()
        self.folder, self.data = folder, data

    def __missing__(self, name: str) -> Path:
        x, y = self.data.split("train")
        torch.manual_seed(0)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # see ONE_THREAD
        try:
            model = bm.train(getattr(bm, name)(), x, y, steps=30, batch_size=64)
        finally:
            torch.set_num_threads(threads)
        self[name] = path = self.folder / f"{name}.pt"
        torch.save(model.state_dict(), path)
        return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory, data) -> _Weights:
    return _Weights(tmp_path_factory.mktemp("family-weights"), data)


def _space(model: torch.nn.Module, precisions: tuple[str, ...] = ("fp32", "int8"), **spec):
    return derive_space(model.eval(), X, ModelSpaceSpec(**spec), precisions=list(precisions))


def _members(space) -> dict[str, set[str]]:
    return {r.root: set(r.members) for g in space.groups for r in g.groups}


# ----------------------------------------------------------------------------- pruning through concat


@pytest.mark.parametrize("name", FAMILIES)
def test_family_is_small_and_prunes_to_a_working_network(name: str) -> None:
    model = getattr(bm, name)().eval()
    params = sum(p.numel() for p in model.parameters())
    assert 5_000 < params < 60_000, params
    space = _space(model)
    pruned = prune_model(model, space, space.smallest().ratios, X)
    assert pruned(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in pruned.parameters()) < 0.8 * params
    # every group left in the space removes exactly its channels: the pruned network computes
    # what the original computes with the readers of those channels zeroed
    raw = [r for g in space.groups for r in g.groups]
    assert inexact_groups(model, X, raw, 0.5) == {}


def test_densenet_prunes_through_concatenations_and_fixes_uneven_grouped_convs() -> None:
    model = bm.densenet().eval()
    space = _space(model, max_prune_groups=50)
    members = _members(space)
    # the transition's channels reach every later layer of the second block through its
    # concatenations: each one's pre-activation BN and 1x1 conv, the final BN and the classifier
    assert {"block2.0.bn1", "block2.0.conv1", "block2.1.bn1", "block2.2.conv1", "norm", "fc"} <= members["trans1.conv"]
    # the first block's 1x1 convs are grouped (2): a concatenated piece that lands in one of
    # their groups only cannot be cut there; torch-pruning would slice the wrong weights without
    # failing (block1.1.conv2 feeds the second half of block1.2.conv1's input only)
    notes = " ".join(space.notes)
    for root in ("stem", "block1.0.conv2", "block1.1.conv2"):
        assert f"group {root} is not pruned: it feeds the grouped conv" in notes
        assert root not in members
    # a grouped conv's own outputs are cut evenly, the same positions in each group
    pruned = prune_model(model, space, {"block1.0.conv1": 0.5, "block2.1.conv2": 0.5, "trans1.conv": 0.5}, X)
    conv = pruned.get_submodule("block1.0.conv1")
    assert (conv.out_channels, conv.groups) == (8, 2)
    assert pruned.get_submodule("block2.2.conv1").in_channels == 10 + 8 + 4
    assert pruned.get_submodule("fc").in_features == 10 + 8 + 4 + 8


class _ResNeXtBlock(torch.nn.Module):
    """A 1x1 conv feeding a grouped 3x3 (ResNeXt): its channels are cut the same in each group."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, groups=4), nn.BatchNorm2d(32), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(32, 16, 1), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.fc((x + self.c(self.b(self.a(x)))).mean((2, 3)))


def test_a_conv_feeding_a_grouped_conv_whole_is_cut_evenly() -> None:
    model = _ResNeXtBlock().eval()
    space = _space(model, max_prune_groups=20)
    blocks = {r.root: r.channel_groups for g in space.groups for r in g.groups}
    assert blocks["a.0"] == 4 and blocks["b.0"] == 4 and not space.notes
    pruned = prune_model(model, space, {"a.0": 0.5, "b.0": 0.5}, X)
    conv = pruned.get_submodule("b.0")
    assert (conv.in_channels, conv.out_channels, conv.groups) == (16, 16, 4)
    assert inexact_groups(model, X, [r for g in space.groups for r in g.groups], 0.5) == {}


def test_preact_resnet_couples_the_next_blocks_batchnorm_with_the_stream() -> None:
    space = _space(bm.preact_resnet(), max_prune_groups=50)
    members = _members(space)
    stream = next(m for m in members.values() if "stem" in m)
    # the stream the stem and the first block write: its BN is the next block's pre-activation
    assert {"stages.0.0.conv2", "stages.0.0.bn1", "stages.1.0.bn1", "stages.1.0.conv1", "stages.1.0.shortcut"} <= stream
    assert {"norm", "fc", "stages.2.0.shortcut"} <= members["stages.2.0.conv2"]  # the last stream, read by the head
    assert not space.notes


def test_unet_skip_concatenations_shrink_with_their_encoder() -> None:
    model = bm.unet().eval()
    space = _space(model)
    members = _members(space)
    assert "dec1.0" in members["enc1.1.0"] and "dec2.0" in members["enc2.1.0"]  # the skips
    pruned = prune_model(model, space, space.smallest().ratios, X)
    get = pruned.get_submodule
    assert get("dec2.0").in_channels == get("bottom.1.0").out_channels + get("enc2.1.0").out_channels
    assert get("dec1.0").in_channels == get("dec2.0").out_channels + get("enc1.1.0").out_channels


def test_yolo_neck_fixes_the_split_groups_and_prunes_the_rest() -> None:
    model = bm.yolo_neck().eval()
    space = _space(model, max_prune_groups=50)
    members = _members(space)
    notes = " ".join(space.notes)
    for c2f in ("c2", "c3", "fpn"):  # a bottleneck adds into the second half of its split
        assert f"group {c2f}.m.0.cv2.conv is not pruned: its channels pass a split" in notes
    assert "sppf.cv2.conv" in members["sppf.cv1.conv"]  # the four pooled copies, concatenated
    assert {"fpn.cv1.conv", "fpn.cv2.conv"} & members["c2.cv2.conv"]  # upsample + concat into the FPN
    assert len(space.groups) >= 5


# ----------------------------------------------------------------------------- per-run layer scale


def _problem(name: str, weights, data, target: str, tmp_path: Path, **spec) -> UserModelProblem:
    user = load_user_model(f"{MODELS}:{name}", weights[name], default_shape=(1, 28, 28))
    dev = get_target(target)
    space = derive_space(user.module, X, ModelSpaceSpec(**spec), precisions=list(dev.device.precisions))
    return UserModelProblem.from_parts(user=user, space=space, data=data, target=dev, models_dir=tmp_path)


def test_per_run_scale_is_fitted_on_the_original_and_prices_the_trials(tables, weights, data, tmp_path) -> None:
    problem = _problem("preact_resnet", weights, data, "cpu", tmp_path)
    problem.check()
    table_scale = problem.target.device.layer_scale
    base = problem.prepare(tmp_path)["baseline"]
    entry = base["latency_scale"]
    assert entry["fitted"] and set(entry["networks"]) == {"fp32", "int8"}
    for net in entry["networks"].values():
        assert abs(net["predicted_after_ms"] / net["measured_ms"] - 1) <= 0.10, net
    fp32 = entry["networks"]["fp32"]
    assert base["latency_ms"] == pytest.approx(fp32["predicted_after_ms"], rel=1e-3)
    assert problem.target.device.layer_scale == entry["layer_scale"] != table_scale
    assert problem.predict(problem.largest()).latency_ms == pytest.approx(base["latency_ms"])
    assert (tmp_path / SCALE_FILE).is_file()
    # a worker (or --resume) takes the run's scale from the file instead of timing again
    again = _problem("preact_resnet", weights, data, "cpu", tmp_path)
    again.attach(tmp_path)
    assert again.target.device.layer_scale == entry["layer_scale"]
    # an estimated target keeps its calibration
    jetson = _problem("preact_resnet", weights, data, "jetson", tmp_path / "j")
    (tmp_path / "j").mkdir()
    jetson.check()
    entry = jetson.prepare(tmp_path / "j")["baseline"]["latency_scale"]
    assert not entry["fitted"] and "estimated" in entry["why"]
    assert not (tmp_path / "j" / SCALE_FILE).exists()


# ----------------------------------------------------------------------------- fp16 parts


def test_fp16_parts_are_exported_in_half_precision_and_priced_as_fp16(weights, data, tmp_path) -> None:
    problem = _problem("resnet_tiny", weights, data, "jetson", tmp_path, first_last="follow")
    dims = problem.space.dimensions()
    parts = [k for k in dims if k.startswith("precision.")]
    assert all(dims[k] == ["fp32", "fp16", "int8"] for k in parts)  # the target runs fp16
    flat = {**problem.space.largest().to_flat(), "finetune_steps": 0}
    flat.update({k: p for k, p in zip(parts, ["fp16", "int8", "fp16", "fp32"], strict=False)})
    cand = ModelCandidate.from_flat(flat)
    problem.prepare(tmp_path)
    result = problem.evaluate(cand, 5)
    model = onnx.load(result.model_path)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["Cast"] >= 4 and ops["QuantizeLinear"] >= 1  # casts at the fp16 parts' edges
    half = [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert any(n.startswith("stem") for n in half) and ops["BatchNormalization"] == 0  # BN folded, in fp16
    x_test, y_test = data.split("test")
    assert ort_accuracy(result.model_path, x_test, y_test) == result.test_accuracy
    assert result.test_accuracy >= problem._baseline["test_accuracy"] - 0.05
    labels = [c.label for c in problem.predict(cand).breakdown]
    assert sum(label.endswith("fp16") for label in labels) >= 2 and any(label.endswith("int8") for label in labels)
    assert result.latency_ms == pytest.approx(problem.predict(cand).latency_ms)


# ----------------------------------------------------------------------------- the CLI, per family


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("name", FAMILIES)
def test_family_search_and_export_end_to_end(name: str, tables, weights, tmp_path: Path) -> None:
    run = tmp_path / "run"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"finetune_steps": [10], "kd_alpha": [0.5], "kd_temperature": [4.0],
                                     "qat": [False], "recalib_batches": 5}))  # fmt: skip
    env = {"AUTOCOMPRESS_TABLES": str(tables), **ONE_THREAD}
    proc = cli("search", "--model", f"{MODELS}:{name}", "--weights", str(weights[name]), "--dataset", "fashion-mnist",
               "--subset", str(SUBSET), "--target", "cpu", "--budget", "10ms", "--trials", "3", "--space", str(space),
               "--run-dir", str(run), "--sampler", "random", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = yaml.safe_load((run / "config.yaml").read_text())
    scale = config["baseline"]["latency_scale"]
    assert scale["fitted"]
    fp32 = scale["networks"]["fp32"]
    assert abs(fp32["predicted_after_ms"] / fp32["measured_ms"] - 1) <= 0.10, fp32
    trials = pd.read_parquet(run / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) == 3
    largest, smallest = (done[done["seeded"] == s].iloc[0] for s in ("largest", "smallest"))
    assert smallest["params"] < largest["params"] and smallest["size_bytes"] < largest["size_bytes"]
    pareto = pd.read_csv(run / "pareto.csv")
    assert len(pareto)
    x_test, y_test = load_dataset("fashion-mnist", subset=SUBSET, seed=0).split("test")
    for number in pareto["number"]:
        out = tmp_path / f"export-{number}"
        proc = cli("export", str(run), "--trial", str(number), "--format", "onnx", "--out", str(out), env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        row = done.set_index("number").loc[number]
        model = out / f"trial_{number:04d}.onnx"
        assert ort_accuracy(model, x_test, y_test) == pytest.approx(float(row["test_accuracy"]))


def test_find_groups_lists_the_families_concat_consumers() -> None:
    raw, head = find_groups(bm.unet().eval(), X)
    assert head == "fc" and len(raw) == 9
