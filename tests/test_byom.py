"""Bring your own model: space derivation from torch-pruning's dependency graph, pruned + int8
exports of two models the project does not define, a short search through the CLI, and one
clear line (exit 2) for each bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import optuna
import pandas as pd
import pytest
import torch
import yaml

from autocompress.data import load_dataset
from autocompress.exceptions import ModelError, SpaceError
from autocompress.hardware.layer_predict import layer_precisions, predict_layers
from autocompress.hardware.layer_table import load_layers
from autocompress.hardware.onnx_layers import extract_layers
from autocompress.hardware.targets import get_target
from autocompress.problems.user_model.loader import load_user_model
from autocompress.problems.user_model.problem import UserModelProblem
from autocompress.problems.user_model.space import (
    ModelCandidate,
    ModelSpaceSpec,
    derive_space,
    load_model_space_spec,
    prune_model,
)
from autocompress.runtime import ort_accuracy
from autocompress.search.storage import open_storage
from tests import byom_models as bm
from tests.helpers import ROOT, assert_one_line_error, cli

MODELS = str(Path("tests") / "byom_models.py")
X = torch.zeros(2, 1, 28, 28)


@pytest.fixture(scope="module")
def data(fashion_dir):
    return load_dataset("fashion-mnist", subset=400, seed=0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, data) -> dict[str, Path]:
    """resnet_tiny and mobilenet trained briefly, saved as state dicts (as a user would)."""
    folder = tmp_path_factory.mktemp("weights")
    x, y = data.split("train")
    out = {}
    for name in ("resnet_tiny", "mobilenet"):
        torch.manual_seed(0)
        model = bm.train(getattr(bm, name)(), x, y, steps=30)
        out[name] = folder / f"{name}.pt"
        torch.save(model.state_dict(), out[name])
    return out


def _space(model: torch.nn.Module, **spec) -> object:
    return derive_space(model.eval(), X, ModelSpaceSpec(**spec), precisions=["fp32", "int8"])


# ----------------------------------------------------------------------------- space derivation


def test_resnet_groups_couple_the_residual_stream() -> None:
    space = _space(bm.resnet(), max_prune_groups=20)
    members = {g.name: {m for r in g.groups for m in r.members} for g in space.groups}
    # the second stage's residual stream: its shortcut conv and both blocks' last convs write into
    # the same adds, so they are one group (with the BatchNorms and the next stage's inputs)
    stream = [n for n, ms in members.items() if {"layer2.0.shortcut.0", "layer2.0.conv2", "layer2.1.conv2"} <= ms]
    assert len(stream) == 1
    assert {"layer3.0.conv1", "layer3.0.shortcut.0"} <= members[stream[0]]
    # each block's inner conv is a group of its own
    assert "layer1.0.conv1" in members and members["layer1.0.conv1"] == {"layer1.0.conv1", "layer1.0.bn1",
                                                                        "layer1.0.conv2"}  # fmt: skip
    assert len(space.groups) == 9
    # the classifier's outputs are never a dimension; its inputs belong to the last stream
    assert space.head == "fc"
    dims = space.dimensions()
    assert all(dims[f"prune.{g.name}"] == [0.0, 0.25, 0.5] for g in space.groups)
    # precision: one dimension per part, the first and last fixed to fp32
    parts = [k for k in dims if k.startswith("precision.")]
    assert dims[parts[0]] == ["fp32"] and dims[parts[-1]] == ["fp32"]
    assert all(dims[p] == ["fp32", "int8"] for p in parts[1:-1])
    assert {"kd_alpha", "kd_temperature", "finetune_steps"} <= set(dims)


def test_many_groups_are_merged_per_block() -> None:
    space = _space(bm.resnet())  # 9 groups > max_prune_groups 8: merged by module path
    names = [g.name for g in space.groups]
    assert len(names) <= 8
    assert "layer2.0" in names and sum(len(g.groups) for g in space.groups) == 9


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_pruned_models_keep_residual_shapes(name: str) -> None:
    model = getattr(bm, name)().eval()
    space = _space(model)
    cand = space.smallest()
    pruned = prune_model(model, space, cand.ratios, X)
    out = pruned(torch.rand(3, 1, 28, 28))  # every add (and SE multiply) still matches, or this raises
    assert out.shape == (3, 10)
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in pruned.parameters())
    assert after < 0.5 * before, (before, after)
    convs = dict(pruned.named_modules())
    if name == "resnet":
        # the convs writing into one residual stream shrank together
        widths = {convs[m].out_channels for m in ("layer2.0.conv2", "layer2.0.shortcut.0", "layer2.1.conv2")}
        assert widths == {16}, widths
    else:
        # depthwise convs stay depthwise; squeeze-excite convs shrank with their block
        dw = convs["blocks.2.dw.0"]
        assert dw.groups == dw.in_channels == dw.out_channels < 72
        assert convs["blocks.2.se.fc2"].out_channels == dw.out_channels
    assert model(X).shape == (2, 10)  # the user's model itself is left alone
    assert sum(p.numel() for p in model.parameters()) == before


def test_space_yaml_fixes_and_narrows(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"prune": {"layer1": [0.0]}, "prune_ratio": [0.0, 0.5],
                                    "precisions": {"layer2": ["int8"]}, "finetune_steps": [5]}))  # fmt: skip
    space = derive_space(bm.resnet().eval(), X, load_model_space_spec(path), precisions=["fp32", "int8"])
    dims = space.dimensions()
    assert dims["prune.layer1.0"] == [0.0] and dims["prune.layer1.1"] == [0.0]
    assert dims["prune.layer2.0"] == [0.0, 0.5]
    assert dims["precision.layer2"] == ["int8"] and dims["finetune_steps"] == [5]
    path.write_text(yaml.safe_dump({"prune": {"layer9": [0.0]}}))
    with pytest.raises(SpaceError, match="layer9 names no pruning group"):
        derive_space(bm.resnet().eval(), X, load_model_space_spec(path), precisions=["fp32", "int8"])
    with pytest.raises(SpaceError, match="fp16"):
        derive_space(bm.resnet().eval(), X, ModelSpaceSpec(precision=["fp32", "fp16"]), precisions=["fp32", "int8"])


def test_untraceable_model_is_refused() -> None:
    with pytest.raises(ModelError, match="torch-pruning cannot trace"):
        _space(bm.untraceable())


# ----------------------------------------------------------------------------- pruned + int8 exports


@pytest.mark.parametrize("name", ["resnet_tiny", "mobilenet"])
def test_pruned_int8_export_runs_in_onnx_runtime(name: str, weights, data, tmp_path: Path) -> None:
    target = get_target("cpu")
    user = load_user_model(f"{MODELS}:{name}", weights[name], default_shape=(1, 28, 28))
    space = derive_space(user.module, X, ModelSpaceSpec(), precisions=["fp32", "int8"])
    ev = UserModelProblem.from_parts(user=user, space=space, data=data, target=target, models_dir=tmp_path)
    flat = {**space.smallest().to_flat(), "finetune_steps": 10, "kd_alpha": 0.5}
    flat.update({k: 0.25 for k in flat if k.startswith("prune.")})
    cand = ModelCandidate.from_flat(flat)
    assert any(p == "int8" for _, p in cand.precision) and any(r > 0 for _, r in cand.prune)
    result = ev.evaluate(cand, 7)
    path = Path(result.model_path)
    assert path.name == "trial_0007.onnx" and not list(tmp_path.glob(".*"))
    graph = onnx.load(str(path)).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    assert any(n.op_type == "DequantizeLinear" and ("layer" in n.name or "blocks" in n.name) for n in graph.node)
    # ONNX Runtime loads it and gives exactly the accuracy the trial recorded
    x_test, y_test = data.split("test")
    assert ort_accuracy(path, x_test, y_test) == result.test_accuracy
    assert result.test_accuracy > 0.15  # better than chance (10 classes) after a brief training
    original = sum(p.numel() for p in user.module.parameters())
    assert result.params < original and result.macs > 0
    # the latency is the layer table's price of the pruned network (fine-tuning does not change
    # it), one priced layer per layer of the original
    prediction = ev.predict(cand)
    assert result.latency_ms == pytest.approx(prediction.latency_ms)
    assert len(prediction.breakdown) == len(ev.predict(space.largest()).breakdown)


def test_qat_on_a_users_model_is_recorded_and_deployed_when_better(weights, data, tmp_path: Path) -> None:
    """A candidate that allows QAT, with a threshold every PTQ loss exceeds: the fake-quantized
    fine-tune runs on the user's model, its file is kept only if it scores better on validation,
    and the recorded accuracies are those of the deployed file."""
    target = get_target("cpu")
    user = load_user_model(f"{MODELS}:resnet_tiny", weights["resnet_tiny"], default_shape=(1, 28, 28))
    space = derive_space(user.module, X, ModelSpaceSpec(qat_threshold_pp=-100.0, qat_steps=10),
                         precisions=["fp32", "int8"])  # fmt: skip
    assert space.dimensions()["qat"] == [False, True]
    ev = UserModelProblem.from_parts(user=user, space=space, data=data, target=target, models_dir=tmp_path)
    flat = {**space.smallest().to_flat(), "finetune_steps": 10, "kd_alpha": 0.5, "qat": True}
    flat.update({k: 0.25 for k in flat if k.startswith("prune.")})
    result = ev.evaluate(ModelCandidate.from_flat(flat), 3)
    assert result.float_val_accuracy is not None and result.qat_val_accuracy is not None
    assert result.ptq_drop_pp is not None
    x_val, y_val = data.split("val")
    deployed = ort_accuracy(result.model_path, x_val, y_val)
    assert deployed == result.val_accuracy
    if result.qat_applied:
        assert deployed == result.qat_val_accuracy
    else:
        assert deployed >= result.qat_val_accuracy
    assert not list(tmp_path.glob(".*"))  # no scratch folder left
    # without QAT allowed, the same candidate records PTQ only
    plain = ev.evaluate(ModelCandidate.from_flat({**flat, "qat": False}), 4)
    assert plain.qat_val_accuracy is None and plain.ptq_drop_pp is not None and not plain.qat_applied
    # a space without int8 has no QAT dimension to search
    assert _space(bm.resnet_tiny(), precision=["fp32"]).dimensions()["qat"] == [False]


def test_fake_quantized_inputs_bakes_weights_and_leaves_no_hooks() -> None:
    from autocompress.compress.qat import fake_quantized

    torch.manual_seed(0)
    model = bm.resnet_tiny().eval()
    x = torch.randn(4, 1, 28, 28)
    before = model(x)
    other = model.get_submodule("layer1.0.conv2").weight.detach().clone()
    conv = model.get_submodule("layer1.0.conv1")
    with fake_quantized([conv], inputs=True) as quantizers:
        assert len(quantizers) == 1  # one observer, on the conv's input
        model(x)
        assert quantizers[0].scale.item() > 0
    w = conv.weight.detach()
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    assert torch.allclose(w / scale, (w / scale).round(), atol=1e-3)  # on its int8 grid per channel
    assert not conv._forward_pre_hooks and not conv._forward_hooks
    assert not torch.equal(before, model(x))  # the weights changed, and only this conv's
    assert torch.equal(model.get_submodule("layer1.0.conv2").weight, other)


def test_layer_table_prices_the_exported_graph(weights, tmp_path: Path) -> None:
    target = get_target("cpu")
    table = load_layers(target.folder, target.device)
    user = load_user_model(f"{MODELS}:mobilenet", weights["mobilenet"], default_shape=(1, 28, 28))
    from autocompress.runtime import export_onnx

    path = export_onnx(user.module, tmp_path / "m.onnx", channels=1, resolution=28)
    layers, unknown = extract_layers(path)
    assert not unknown
    ops = {layer.key.op for layer in layers}
    assert {"conv", "add", "scale", "globalpool", "linear"} <= ops
    assert any(layer.key.depthwise for layer in layers)
    fp32 = predict_layers(target.device, table, layers, ["fp32"] * len(layers))
    assert fp32.interpolated == 0  # every layer of the unpruned model was profiled
    assert fp32.latency_ms == pytest.approx(target.device.overhead_ms + sum(c.latency_ms for c in fp32.breakdown))
    mixed = layer_precisions(layers, {"/blocks/": "int8"})
    assert mixed.count("int8") == sum(layer.node.startswith("/blocks/") for layer in layers)
    # estimated targets price the same graph from their roofline, labelled estimated
    jetson = get_target("jetson")
    est = predict_layers(jetson.device, load_layers(jetson.folder, jetson.device), layers, ["int8"] * len(layers))
    assert est.latency_ms > 0 and jetson.estimated


# ----------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_latency_of_a_searched_file_is_the_figure_the_search_gave_it(weights, tmp_path: Path) -> None:
    """`autocompress latency` on each trial's int8 file (a QDQ graph) prices what the search
    priced before quantizing: a conv that only reads an int8 region's exit, or a pool with no
    quantize after it, runs in float (they were read as int8, 1-8% off)."""
    from autocompress.hardware.file_latency import file_latency

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"finetune_steps": [0], "kd_alpha": [0.5], "kd_temperature": [4.0]}))
    run = tmp_path / "run"
    proc = cli("search", "--model", f"{MODELS}:resnet_tiny", "--weights", str(weights["resnet_tiny"]),
               "--dataset", "fashion-mnist", "--subset", "300", "--target", "rpi4", "--budget", "10ms",
               "--trials", "5", "--finalize", "0", "--space", str(space), "--run-dir", str(run), "--sampler", "random")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    done = pd.read_parquet(run / "trials.parquet").query("state == 'COMPLETE'")
    int8 = 0
    for _, r in done.iterrows():
        f = file_latency(Path(r["model_path"]), "rpi4")
        assert f.latency_ms == pytest.approx(r["latency_ms"], rel=1e-6), r["number"]
        int8 += "int8" in f.layer_precisions
    assert int8 >= 2, "the random trials should include int8 files"


@pytest.mark.slow
def test_an_original_model_at_chance_is_warned_about(tmp_path: Path, fashion_dir) -> None:
    """Untrained weights (or weights for another data set) make every comparison meaningless:
    the search says so before its trials."""
    torch.manual_seed(0)
    path = tmp_path / "untrained.pt"
    torch.save(bm.resnet_tiny().state_dict(), path)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"finetune_steps": [0], "kd_alpha": [0.5], "kd_temperature": [4.0]}))
    proc = cli("search", "--model", f"{MODELS}:resnet_tiny", "--weights", str(path), "--dataset", "fashion-mnist",
               "--subset", "300", "--target", "cpu", "--budget", "10ms", "--trials", "1", "--finalize", "0",
               "--space", str(space), "--run-dir", str(tmp_path / "run"))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if "about chance" in ln)
    assert "warning: your model resnet_tiny() scores" in line and "(10% for 10 classes)" in line
    # --subset 300 leaves 300 validation images: enough not to be warned about
    assert "the validation split holds" not in proc.stdout


@pytest.mark.slow
def test_search_cli_end_to_end(weights, tmp_path: Path) -> None:
    run = tmp_path / "run"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"finetune_steps": [0, 10], "kd_alpha": [0.5], "kd_temperature": [4.0]}))
    proc = cli("search", "--model", f"{MODELS}:resnet_tiny", "--weights", str(weights["resnet_tiny"]),
               "--dataset", "fashion-mnist", "--subset", "300", "--target", "cpu", "--budget", "10ms",
               "--trials", "3", "--space", str(space), "--run-dir", str(run), "--sampler", "random")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("config.yaml", "study.db", "trials.parquet", "pareto.csv", "pareto.png", "report.md",
                 "models/original.onnx"):  # fmt: skip
        assert (run / name).is_file(), name
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["function"] == "resnet_tiny" and len(config["model"]["weights_sha256"]) == 64
    trials = pd.read_parquet(run / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) == 3
    assert {"prune.stem.0", "precision.layer1.0", "kd_alpha", "finetune_steps", "val_accuracy", "latency_ms"} <= set(trials)
    assert set(done["seeded"].dropna()) == {"largest", "smallest"}
    largest = done[done["seeded"] == "largest"].iloc[0]
    smallest = done[done["seeded"] == "smallest"].iloc[0]
    assert smallest["size_bytes"] < largest["size_bytes"] and smallest["params"] < largest["params"]
    assert (done["feasible"] == (done["latency_ms"] <= 10.0)).all()
    assert all((ROOT / p).is_file() or Path(p).is_file() for p in done["model_path"])
    assert "Accuracy–latency front on" in proc.stdout and "original" in proc.stdout
    assert "resnet_tiny" in (run / "report.md").read_text()
    assert "about chance" not in proc.stdout  # a trained model: no warning
    # the finalize phase distils from the user's model, and says so (not "the largest network")
    assert config["finalize"]["schedule_text"].endswith("from your original model")
    # 10 ms is far above the original model on this CPU: the run says the budget does not bind
    entry = config["latency_range"]
    # the range holds the original and the most compressed model at every precision mix (int8
    # entries cost on a model this small, so a mix may be slower than both); partly pruned
    # candidates are not priced, and the range says so (exact False, "likely")
    ends = sorted([float(config["baseline"]["latency_ms"]), float(smallest["latency_ms"])])
    assert entry["binds"] is False and entry["exact"] is False and 0 < entry["min_ms"] < entry["max_ms"]
    # config.yaml rounds to 5 decimals; under a loaded machine the smallest trial's price was seen
    # 0.15% off the range's (cause not established: noted in the issue-17 closing note)
    assert entry["min_ms"] <= ends[0] * 1.01 and entry["max_ms"] >= ends[1] * 0.99
    assert "budget 10 ms likely does not bind on x86-cpu-onnxruntime" in proc.stdout
    # --resume with a higher --trials continues the same study: the 3 trials kept, one more run
    proc = cli("search", "--model", f"{MODELS}:resnet_tiny", "--weights", str(weights["resnet_tiny"]),
               "--dataset", "fashion-mnist", "--subset", "300", "--target", "cpu", "--budget", "10ms",
               "--trials", "4", "--space", str(space), "--run-dir", str(run), "--sampler", "random", "--resume")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    again = pd.read_parquet(run / "trials.parquet")
    again_done = again[again["state"] == "COMPLETE"]
    assert len(again_done) == 4
    kept = again_done.set_index("number").loc[done["number"], "val_accuracy"].tolist()
    assert kept == done["val_accuracy"].tolist()


def _bad(*args: str) -> object:
    return cli("search", "--target", "cpu", "--budget", "5ms", "--subset", "200", *args)


@pytest.mark.slow
def test_bad_inputs_exit_2_with_one_line(weights, tmp_path: Path) -> None:
    w_res, w_mob = str(weights["resnet_tiny"]), str(weights["mobilenet"])
    cases = [
        (("--model", "tests/byom_models.py", "--weights", w_res), "FILE.py:FUNCTION"),
        (("--model", "tests/nope.py:build", "--weights", w_res), "does not exist"),
        (("--model", f"{MODELS}:build", "--weights", w_res), "has no function 'build'"),
        (("--model", f"{MODELS}:not_a_module", "--weights", w_res), "not a torch.nn.Module"),
        (("--model", f"{MODELS}:mobilenet", "--weights", w_res), "does not match the model mobilenet()"),
        (("--model", f"{MODELS}:resnet_wrong_head", "--weights", _save(tmp_path, bm.resnet_wrong_head())),
         "10 classes but resnet_wrong_head() outputs 12"),
        (("--model", f"{MODELS}:untraceable", "--weights", _save(tmp_path, bm.untraceable())),
         "torch-pruning cannot trace"),
    ]  # fmt: skip
    for args, fragment in cases:
        proc = _bad(*args)
        assert_one_line_error(proc, 2, fragment)
    assert w_mob
    # a layer no row covers, on a table measured on another machine (on this one it is profiled at
    # search start): one line with the command that profiles it there
    tables = tmp_path / "tables"
    shutil.copytree(get_target("cpu").folder, tables / "cpu")
    device = yaml.safe_load((tables / "cpu" / "device.yaml").read_text())
    device["host"]["cpu"] = "Another CPU"
    (tables / "cpu" / "device.yaml").write_text(yaml.safe_dump(device))
    proc = cli("search", "--target", "cpu", "--budget", "5ms", "--subset", "200", "--model", f"{MODELS}:wide_kernel",
               "--weights", _save(tmp_path, bm.wide_kernel()), env={"AUTOCOMPRESS_TABLES": str(tables)})  # fmt: skip
    assert_one_line_error(proc, 2, "autocompress profile --layers --model")


def _save(folder: Path, model: torch.nn.Module) -> str:
    path = folder / f"{type(model).__name__}.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def test_weights_file_must_be_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(bm.resnet_tiny(), path)  # the whole module pickled: refused by weights_only=True
    with pytest.raises(ModelError, match="weights_only=True"):
        load_user_model(f"{MODELS}:resnet_tiny", path, default_shape=(1, 28, 28))


@pytest.fixture(scope="module")
def journal_run(weights, tmp_path_factory) -> tuple[Path, Path]:
    """A short model search whose study lives in a journal file (``--storage journal:PATH``)."""
    folder = tmp_path_factory.mktemp("journal")
    run, journal = folder / "run", folder / "shared" / "study.log"
    space = folder / "space.yaml"
    space.write_text(yaml.safe_dump({"finetune_steps": [10], "kd_alpha": [0.5], "kd_temperature": [4.0]}))
    proc = cli("search", "--model", f"{MODELS}:resnet_tiny", "--weights", str(weights["resnet_tiny"]),
               "--dataset", "fashion-mnist", "--subset", "300", "--target", "cpu", "--budget", "10ms",
               "--trials", "3", "--space", str(space), "--run-dir", str(run), "--sampler", "random",
               "--storage", f"journal:{journal}")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run, journal


@pytest.mark.slow
def test_model_search_keeps_its_study_in_the_journal_storage(journal_run) -> None:
    run, journal = journal_run
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["kind"] == "model" and config["storage"]["kind"] == "journal"
    assert journal.is_file() and journal.stat().st_size > 0 and not (run / "study.db").exists()
    study = optuna.load_study(study_name="autocompress", storage=open_storage(f"journal:{journal}"))
    trials = pd.read_parquet(run / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) == 3
    assert sorted(t.number for t in study.trials if t.state.name == "COMPLETE") == sorted(done["number"])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_a_model_run_exports_its_best_trial(journal_run, tmp_path: Path, fmt: str) -> None:
    """export --best on a user-model run: the card describes the model's candidate and its
    accuracy, re-measured on the exported file, is the trials table's."""
    if fmt == "openvino":
        pytest.importorskip("openvino")
    run, _ = journal_run
    out = tmp_path / fmt
    proc = cli("export", str(run), "--best", "--format", fmt, "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    card = json.loads((out / "model_card.json").read_text())
    trials = pd.read_parquet(run / "trials.parquet").set_index("number")
    row = trials.loc[card["run"]["trial"]]
    assert card["accuracy"]["test_in_trials_table"] == pytest.approx(float(row["test_accuracy"]))
    tol = 0.0 if fmt == "onnx" else card["accuracy"]["allowed_difference"]
    assert abs(card["accuracy"]["test"] - float(row["test_accuracy"])) <= tol + 1e-12
    assert card["candidate"]["problem"] == "model"
    assert card["candidate"]["choices"]["kd_alpha"] == 0.5 and card["dataset"]["input"]["shape"] == ["batch", 1, 28, 28]
    assert any(p["part"].startswith("prune ") for p in card["candidate"]["parts"])
    model = out / f"trial_{card['run']['trial']:04d}.{'onnx' if fmt == 'onnx' else 'xml'}"
    assert model.is_file()
    if fmt == "onnx":
        x_test, y_test = load_dataset("fashion-mnist", subset=300, seed=0).split("test")
        assert ort_accuracy(model, x_test, y_test) == pytest.approx(float(row["test_accuracy"]))


@pytest.mark.slow
def test_model_search_runs_on_ray_workers(weights, tmp_path: Path) -> None:
    """--model with --backend ray: each worker rebuilds the user's problem from its recipe."""
    pytest.importorskip("ray.tune")
    run = tmp_path / "run"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"finetune_steps": [0], "kd_alpha": [0.0], "kd_temperature": [4.0]}))
    proc = cli("search", "--model", f"{MODELS}:resnet_tiny", "--weights", str(weights["resnet_tiny"]),
               "--dataset", "fashion-mnist", "--subset", "300", "--target", "cpu", "--budget", "10ms",
               "--trials", "3", "--space", str(space), "--run-dir", str(run), "--sampler", "random",
               "--backend", "ray", "--workers", "2", timeout=1500)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["kind"] == "model" and config["backend"] == {"name": "ray", "workers": 2}
    trials = pd.read_parquet(run / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) == 3
    assert all(Path(p).is_file() for p in done["model_path"])


@pytest.mark.slow
def test_model_search_warm_starts_from_a_model_run_with_halving(journal_run, weights, tmp_path: Path) -> None:
    """--warm-start and --fidelity halving work with --model as with our space: the earlier
    run's Pareto candidates are evaluated first, each at the fidelity halving gives it."""
    run, _ = journal_run
    front = pd.read_csv(run / "pareto.csv")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"finetune_steps": [10], "kd_alpha": [0.5], "kd_temperature": [4.0]}))
    new = tmp_path / "warm"
    proc = cli("search", "--model", f"{MODELS}:resnet_tiny", "--weights", str(weights["resnet_tiny"]),
               "--dataset", "fashion-mnist", "--subset", "300", "--target", "cpu", "--budget", "10ms",
               "--trials", str(len(front)), "--space", str(space), "--run-dir", str(new), "--sampler", "random",
               "--warm-start", str(run), "--fidelity", "halving", "--eta", "3")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = yaml.safe_load((new / "config.yaml").read_text())
    assert config["warm_start"]["candidates"] == len(front) and config["fidelity"] == {"mode": "halving", "eta": 3}
    trials = pd.read_parquet(new / "trials.parquet")
    warm = trials[trials["warm_start"].notna()]
    assert len(warm) == len(front) and set(warm["fidelity"]) <= {"full", "low"}
    assert (warm["low_steps"] == 4).all()  # ceil(10 / 3) fine-tune steps on the low rung
    assert sorted(warm["candidate"]) == sorted(front["candidate"])
